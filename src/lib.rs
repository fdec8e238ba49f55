//! khotfix: from a kernel source fix to signed livepatch hotfix RPMs for every
//! affected kernel, published to a signed yum repository, with a node agent that
//! tells each host whether it needs one.
//!
//! Data flows one way through the stages below; each stage module takes typed
//! inputs and returns typed outputs and never reaches back into an earlier one:
//!
//! `recipe` → `plan` → `fetch` → `prepare` → `build` → `sign` → `package` →
//! `verify` → `publish`, and `node` on the hosts.

pub mod build;
pub mod config;
pub mod distro;
pub mod fetch;
pub mod kernel;
pub mod keys;
pub mod modinfo;
pub mod node;
pub mod package;
pub mod patchfile;
pub mod plan;
pub mod prepare;
pub mod progress;
pub mod publish;
pub mod recipe;
pub mod repodata;
pub mod run;
pub mod sign;
pub mod util;
pub mod verify;
