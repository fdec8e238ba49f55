//! Stage: fetch (to be filled in).
