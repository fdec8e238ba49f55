//! run (to be filled in).
