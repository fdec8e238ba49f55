//! Stage: build (to be filled in).
