//! sign (to be filled in).
