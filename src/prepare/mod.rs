//! Stage: prepare. From fetched kernel packages and a recipe's patches to a
//! source tree ready for kpatch-build or kbuild:
//!
//! - [`srpm`]: unpack source and binary RPMs safely (no path leaves the work
//!   directory), pull `vmlinux` out of kernel-debuginfo, find the kernel
//!   config, and describe the `rpmbuild -bp` run the builder container does.
//! - [`apply`]: apply a target's patches, all of them dry-run first, so a
//!   patch that does not apply fails in seconds, before any compile.
//! - [`preflight`]: read the patches for what kpatch cannot handle.

pub mod apply;
pub mod preflight;
pub mod srpm;
