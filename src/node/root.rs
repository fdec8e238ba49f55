//! The host as seen through `--root DIR`: every read of /proc, /sys, the
//! kernel release and the package database goes through here, so tests (and
//! a DaemonSet with the host mounted at /host) can point the agent at a tree.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Where the host's file system is mounted (`/` on the host itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoot {
    root: PathBuf,
}

impl HostRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HostRoot { root: root.into() }
    }

    /// The root directory itself.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// True when this is the real `/`.
    pub fn is_host(&self) -> bool {
        self.root == Path::new("/")
    }

    /// Map an absolute host path (`/proc/modules`) under the root.
    pub fn path(&self, host_path: &str) -> PathBuf {
        self.root.join(host_path.trim_start_matches('/'))
    }

    /// Does the host path exist (following symlinks, like `test -e`)?
    pub fn exists(&self, host_path: &str) -> bool {
        self.path(host_path).exists()
    }

    /// Read a small file, trimmed; `None` when it does not exist.
    pub fn read_opt(&self, host_path: &str) -> Result<Option<String>> {
        let p = self.path(host_path);
        match std::fs::read_to_string(&p) {
            Ok(s) => Ok(Some(s.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    /// Read a small file that must exist, trimmed.
    pub fn read(&self, host_path: &str) -> Result<String> {
        let p = self.path(host_path);
        std::fs::read_to_string(&p)
            .map(|s| s.trim().to_string())
            .with_context(|| format!("reading {}", p.display()))
    }

    /// The running kernel release (`/proc/sys/kernel/osrelease`, = `uname -r`).
    pub fn osrelease(&self) -> Result<String> {
        self.read("/proc/sys/kernel/osrelease")
    }

    /// Find an executable by name in the host's usual binary directories
    /// (under the root), as a host path: `/usr/bin/dnf`.
    pub fn which(&self, name: &str) -> Option<String> {
        [
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ]
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| is_executable(&self.path(p)))
    }

    /// The rpm database directory, if the host has one.
    pub fn rpmdb(&self) -> Option<String> {
        ["/var/lib/rpm", "/usr/lib/sysimage/rpm"]
            .iter()
            .find(|d| self.path(d).is_dir())
            .map(|d| d.to_string())
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
