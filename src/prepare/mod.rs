//! Stage: prepare (to be filled in).
