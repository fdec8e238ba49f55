//! Stage: verify (to be filled in).

pub mod qemu;
