//! Stage: publish (to be filled in).
