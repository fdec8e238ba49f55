//! Stage: package (to be filled in).
