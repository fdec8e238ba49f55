//! Stage: node (to be filled in).
