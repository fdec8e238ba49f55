//! Stage: verify (to be filled in).
