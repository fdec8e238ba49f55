//! Helpers shared by the integration tests. Every test binary used to carry
//! its own copy of the binary path, the loopback HTTP server, the rpmbuild
//! and gpg fixtures and the dnf command line; the copies drifted (one dnf
//! forgot `skip_if_unavailable=False`, one rpmsign its `_gpg_path`). One
//! module keeps them the same. Each test file says `mod support;` and uses
//! the parts it needs, so code unused by one binary is not dead code.
//!
//! Everything here drives real tools (rpmbuild, gpg, dnf, createrepo_c,
//! openssl, kbuild, python3's http.server); nothing is mocked.
#![allow(dead_code)]

pub mod bin;
pub mod container;
pub mod dnf;
pub mod gpg;
pub mod http;
pub mod kernel;
pub mod kernel_rpms;
pub mod node;
pub mod node_bins;
pub mod process;
pub mod publish;
pub mod rpm;
pub mod tmp;
pub mod yaml;
