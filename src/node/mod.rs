//! Stage: node. The agent that runs on hosts: `khotfix node check|apply|script|daemonset`.
//!
//! * [`cmd`]: the commands as both binaries (`khotfix node`, `khotfix-node`) run them.
//! * [`check`]: does this host need the hotfix? (verdict + exit code)
//! * [`status`]: loaded livepatches and installed hotfix packages.
//! * [`metrics`]: node_exporter textfile metrics of the verdicts.
//! * [`apply`]: install the hotfix package or load a `.ko`, then wait for the
//!   livepatch transition (dry run unless asked).
//! * [`script`]: the same logic as a standalone POSIX sh script.
//! * [`daemonset`]: a Kubernetes manifest running the script on every node.
//! * [`image`]: a `FROM scratch` OCI image holding the static `khotfix-node`.
//! * [`root`]: all host reads go through `--root`, confined and bounded.
//! * [`text`]: which recipe text may reach a node (printable, one line).
//! * [`modinfo`]: a `.ko`'s `.modinfo` section (vermagic, name), read from the ELF.

pub mod apply;
pub mod check;
pub mod cmd;
pub mod daemonset;
pub mod image;
pub mod metrics;
/// The `.modinfo` reader shared by build, verify and node.
pub use crate::modinfo;
pub mod root;
pub mod script;
pub mod status;
pub mod text;

pub use check::{check, CheckReport, Verdict};
pub use root::HostRoot;
