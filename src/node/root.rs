//! The host as seen through `--root DIR`: every read of /proc, /sys, the
//! kernel release and the package database goes through here, so tests (and
//! a DaemonSet with the host mounted at /host) can point the agent at a tree.
//!
//! Why so careful: the root is someone else's file system. Its files may be
//! endless (`/proc/modules` a link to `/dev/zero`), huge, FIFOs that block,
//! or symbolic links that lead out of the root. So:
//!
//! * Paths are resolved as `chroot(2)` would: a symbolic link's absolute
//!   target starts again at the root, a relative one is followed from where it
//!   is. A `..` in a requested path, or one in a link that would climb above
//!   the root, is refused ([`HostRoot::resolve`]); so are more than
//!   [`MAX_LINKS`] links.
//! * Only regular files are read, opened without following a last-moment
//!   link and without blocking, and never more than a fixed limit per kind of
//!   file ([`VALUE_CAP`], [`MODULES_CAP`], ...); a larger file is an error.
//! * Values read from the host are echoed in messages only through [`shown`]:
//!   escaped and cut to [`SHOWN_CHARS`] characters.
//!
//! The generated script (`node script`) implements the same rules in sh
//! (`in_root`, `file_at`); tests hold the two to each other.

use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Most symbolic links followed while resolving one path (as Linux's ELOOP).
pub const MAX_LINKS: usize = 40;
/// One-value files: `osrelease`, livepatch `enabled` and `transition`.
pub const VALUE_CAP: u64 = 4096;
/// `/proc/modules` (a few hundred modules take ~30 KiB).
pub const MODULES_CAP: u64 = 1 << 20;
/// How much of `modules.dep` is read to find its first entry.
pub const MODULES_DEP_HEAD: u64 = 64 << 10;
/// A kernel module file, compressed or not, and after decompression.
pub const KO_CAP: u64 = 64 << 20;
/// A recipe installed under `/etc/khotfix/recipes`.
pub const RECIPE_CAP: u64 = 1 << 20;
/// The rpm database, all files together (copied before it is queried).
pub const RPMDB_CAP: u64 = 512 << 20;
/// Characters of a host value shown in a message.
pub const SHOWN_CHARS: usize = 80;

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

    /// Map an absolute host path (`/proc/modules`) under the root, without
    /// following anything (for messages and for callers that only print it).
    pub fn path(&self, host_path: &str) -> PathBuf {
        self.root.join(host_path.trim_start_matches('/'))
    }

    /// The path under the root that `host_path` names, every symbolic link
    /// followed as in a chroot. The result contains no link (its last part
    /// may not exist). Errors: `..` in `host_path`, a link that climbs above
    /// the root, too many links.
    pub fn resolve(&self, host_path: &str) -> Result<PathBuf> {
        if host_path.split('/').any(|c| c == "..") {
            bail!("{host_path}: '..' is not allowed in a host path");
        }
        // Components still to walk, last first (so pushing a link's target
        // in front is a push onto the end).
        let mut todo: Vec<Vec<u8>> = split_rev(host_path.as_bytes());
        let mut done: Vec<Vec<u8>> = Vec::new();
        let mut links = 0;
        while let Some(c) = todo.pop() {
            match &c[..] {
                b"" | b"." => continue,
                b".." => {
                    if done.pop().is_none() {
                        bail!(
                            "{host_path}: a symbolic link leads outside the root {}",
                            self.root.display()
                        );
                    }
                    continue;
                }
                _ => {}
            }
            let here = self.join(&done).join(OsStr::from_bytes(&c));
            let is_link = std::fs::symlink_metadata(&here)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            if !is_link {
                done.push(c);
                continue;
            }
            links += 1;
            if links > MAX_LINKS {
                bail!("{host_path}: more than {MAX_LINKS} symbolic links");
            }
            let target = match proc_self_link(&done, &c) {
                Some(t) => t,
                None => std::fs::read_link(&here)
                    .with_context(|| format!("{host_path}: reading the link {}", here.display()))?
                    .into_os_string()
                    .into_vec(),
            };
            let target = &target[..];
            if target.starts_with(b"/") {
                done.clear();
            }
            todo.extend(split_rev(target));
        }
        Ok(self.join(&done))
    }

    fn join(&self, parts: &[Vec<u8>]) -> PathBuf {
        let mut p = self.root.clone();
        for c in parts {
            p.push(OsStr::from_bytes(c));
        }
        p
    }

    /// Does the host path exist (following links inside the root, like
    /// `test -e` in a chroot)?
    pub fn exists(&self, host_path: &str) -> Result<bool> {
        Ok(std::fs::symlink_metadata(self.resolve(host_path)?).is_ok())
    }

    /// Is the host path a directory (links followed inside the root)?
    pub fn is_dir(&self, host_path: &str) -> Result<bool> {
        Ok(std::fs::symlink_metadata(self.resolve(host_path)?).is_ok_and(|m| m.is_dir()))
    }

    /// Read a whole regular file of at most `cap` bytes; `None` when it does
    /// not exist. Anything else (a directory, device, FIFO, a larger file) is
    /// an error naming the file.
    pub fn read_capped(&self, host_path: &str, cap: u64) -> Result<Option<Vec<u8>>> {
        let Some(bytes) = self.read_head(host_path, cap + 1)? else {
            return Ok(None);
        };
        if bytes.len() as u64 > cap {
            bail!(
                "{}: larger than {cap} bytes",
                self.path(host_path).display()
            );
        }
        Ok(Some(bytes))
    }

    /// The first `n` bytes (or fewer) of a regular file; `None` when it does
    /// not exist.
    pub fn read_head(&self, host_path: &str, n: u64) -> Result<Option<Vec<u8>>> {
        let p = self.resolve(host_path)?;
        let shown_path = self.path(host_path);
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", shown_path.display())),
        };
        if !meta.is_file() {
            bail!("{}: not a regular file", shown_path.display());
        }
        let f = open_no_follow(&p).with_context(|| format!("reading {}", shown_path.display()))?;
        let mut out = Vec::new();
        f.take(n)
            .read_to_end(&mut out)
            .with_context(|| format!("reading {}", shown_path.display()))?;
        Ok(Some(out))
    }

    /// The raw running kernel release (`/proc/sys/kernel/osrelease`, =
    /// `uname -r`): at most [`VALUE_CAP`] bytes, ASCII white space trimmed.
    pub fn osrelease(&self) -> Result<Vec<u8>> {
        const OSRELEASE: &str = "/proc/sys/kernel/osrelease";
        let bytes = self
            .read_capped(OSRELEASE, VALUE_CAP)?
            .with_context(|| format!("reading {}: no such file", self.path(OSRELEASE).display()))?;
        Ok(bytes.trim_ascii().to_vec())
    }

    /// Find an executable by name in the host's usual binary directories
    /// (under the root), as a host path: `/usr/bin/dnf`.
    pub fn which(&self, name: &str) -> Result<Option<String>> {
        for d in [
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ] {
            let p = format!("{d}/{name}");
            if is_executable(&self.resolve(&p)?) {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    /// The rpm database directories that exist on the host, in rpm's order.
    pub fn rpmdb_dirs(&self) -> Result<Vec<&'static str>> {
        let mut v = Vec::new();
        for d in ["/var/lib/rpm", "/usr/lib/sysimage/rpm"] {
            if self.is_dir(d)? {
                v.push(d);
            }
        }
        Ok(v)
    }
}

/// procfs's `self` and `thread-self` links name the process reading them:
/// resolved for this process, as the kernel would (the generated script uses
/// its shell's `$$` alike). `/proc/net` is a link to `self/net`.
fn proc_self_link(done: &[Vec<u8>], c: &[u8]) -> Option<Vec<u8>> {
    if done.len() != 1 || done[0] != b"proc" {
        return None;
    }
    let pid = std::process::id();
    match c {
        b"self" => Some(pid.to_string().into_bytes()),
        b"thread-self" => Some(format!("{pid}/task/{pid}").into_bytes()),
        _ => None,
    }
}

/// Path components of `p`, last first.
fn split_rev(p: &[u8]) -> Vec<Vec<u8>> {
    p.split(|&b| b == b'/').rev().map(<[u8]>::to_vec).collect()
}

/// Open for reading without following a link in the last component (it was
/// resolved a moment ago; a link appearing since is refused) and without
/// blocking on a FIFO swapped in meanwhile.
fn open_no_follow(p: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A value read from the host, fit for a one-line message: in double quotes,
/// see [`clipped`].
pub fn shown(bytes: &[u8]) -> String {
    format!("\"{}\"", clipped(bytes))
}

/// A value read from the host, fit for one line of output: invalid UTF-8
/// replaced, control and other non-printing characters, `"` and `\\`
/// escaped (Rust `{:?}` style), cut to [`SHOWN_CHARS`] characters with an
/// ellipsis.
pub fn clipped(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for c in text.chars().take(SHOWN_CHARS) {
        if crate::node::text::is_non_printing(c) || c == '"' || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if text.chars().nth(SHOWN_CHARS).is_some() {
        out.push('…');
    }
    out
}
