//! keys (to be filled in).
