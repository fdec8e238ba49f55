//! Unpack RPMs safely, find the kernel config, pull `vmlinux` out of
//! kernel-debuginfo, and describe the `rpmbuild -bp` run that turns a
//! RHEL-family source RPM into a patched kernel tree.
//!
//! Packages come from mirrors we do not control, so every payload entry is
//! checked before anything is written: no absolute paths in source RPMs, no
//! `..`, no NUL, no device nodes, and no symlink whose target (followed
//! through the package's other symlinks) leaves the tree. Nothing is written
//! outside the work directory and nothing half-written is left behind: the
//! unpack goes to a temporary directory next to the destination and is
//! renamed into place only when every entry is done.
//!
//! The rpm crate's `Package::extract` is not used: it mis-roots source RPMs
//! (whose file names carry no directory) and writes symlinks unchecked. We
//! iterate the payload with `PackageReader` instead (streaming, so a
//! kernel-debuginfo package is never held in memory whole), fed by
//! [`super::payload`], which decompresses on a second core.

use super::payload::Payload;
use crate::distro::Distro;
use crate::kernel::KernelRelease;
use crate::util::validate;
use rpm::{FileFlags, FileType};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Why an RPM could not be unpacked. Messages are one line and name the
/// package file (and the entry, when one is at fault).
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// A payload entry that would escape or damage the work directory.
    #[error("{}: refusing entry {entry:?}: {reason}", .rpm.display())]
    Unsafe {
        rpm: PathBuf,
        entry: String,
        reason: String,
    },
    /// The package cannot be read.
    #[error("{}: not a readable RPM: {message}", .rpm.display())]
    Rpm { rpm: PathBuf, message: String },
    /// A file system error while writing.
    #[error("{}: {context}: {source}", .rpm.display())]
    Io {
        rpm: PathBuf,
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A member that was asked for is not in the package (or is not a file).
    #[error("{}: {message}", .rpm.display())]
    Missing { rpm: PathBuf, message: String },
}

/// What one unpacked entry became.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum EntryKind {
    File {
        size: u64,
    },
    Dir,
    /// A symlink, with the (relative) target written on disk.
    Symlink {
        target: String,
    },
}

/// One unpacked entry, by its path relative to the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub path: String,
    #[serde(flatten)]
    pub kind: EntryKind,
}

/// The result of [`unpack_rpm`].
#[derive(Debug, Clone, Serialize)]
pub struct Unpacked {
    pub rpm: PathBuf,
    pub dest: PathBuf,
    /// A source RPM (file names without directories) or a binary one
    /// (absolute paths, re-rooted under `dest`).
    pub source: bool,
    pub entries: Vec<Entry>,
}

impl Unpacked {
    /// Relative paths of regular files.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::File { .. }))
            .map(|e| e.path.as_str())
    }
}

/// A checked entry, ready to write.
#[derive(Debug, Clone)]
struct Planned {
    rel: PathBuf,
    kind: FileType,
    mode: u32,
    /// Size in the header (a hard link's data may come with another member).
    size: u64,
    digest: Option<String>,
    /// Relative symlink target to write (after re-rooting).
    link: Option<String>,
}

/// Check one entry's path (and symlink target) and return its path relative
/// to the destination. `source`: a source RPM, whose entries are bare names.
fn check_path(path: &str, source: bool) -> Result<PathBuf, String> {
    if path.contains('\0') {
        return Err("path contains a NUL byte".into());
    }
    let rel = if source {
        if path.starts_with('/') {
            return Err(
                "absolute path in a source RPM (source RPM entries are bare file names)".into(),
            );
        }
        path
    } else {
        path.strip_prefix('/')
            .ok_or("binary RPM path is not absolute")?
    };
    if rel.is_empty() || rel == "." {
        return Err("entry names the package root itself".into());
    }
    if Path::new(rel)
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err("path contains '..' (path traversal)".into());
    }
    validate::relative_path("path", rel)?;
    let clean: PathBuf = Path::new(rel)
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    if clean.as_os_str().is_empty() {
        return Err("empty path".into());
    }
    Ok(clean)
}

/// Deepest chain of symlinks followed while resolving one target (the
/// kernel's limit, ELOOP, is 40 as well).
const MAX_LINK_DEPTH: usize = 40;

/// Resolves the package's symlinks lexically, each at most once: a link's
/// resolved path (and the depth of the chain behind it) is memoized, so a
/// hostile package whose links fan out to each other costs time linear in its
/// entries instead of exponential. Cycles and chains deeper than
/// [`MAX_LINK_DEPTH`] are refused.
struct LinkResolver<'a> {
    links: &'a HashMap<PathBuf, String>,
    source: bool,
    /// Link path -> (resolved path, depth of the chain behind it).
    memo: HashMap<PathBuf, (PathBuf, usize)>,
    /// Links being resolved right now (a revisit is a cycle).
    active: std::collections::HashSet<PathBuf>,
}

impl<'a> LinkResolver<'a> {
    fn new(links: &'a HashMap<PathBuf, String>, source: bool) -> Self {
        LinkResolver {
            links,
            source,
            memo: HashMap::with_capacity(links.len()),
            active: std::collections::HashSet::new(),
        }
    }

    /// Resolve `target` as seen from directory `start`; `level` is the
    /// recursion depth (bounded, so a long chain cannot exhaust the stack).
    /// Returns the resolved path and the depth of the deepest chain used.
    fn walk(
        &mut self,
        start: PathBuf,
        target: &str,
        level: usize,
    ) -> Result<(PathBuf, usize), String> {
        if target.contains('\0') {
            return Err("symlink target contains a NUL byte".into());
        }
        let mut cur = if target.starts_with('/') {
            if self.source {
                return Err(format!(
                    "symlink target {target:?} is absolute and leaves the tree"
                ));
            }
            PathBuf::new()
        } else {
            start
        };
        let mut depth = 0;
        for c in Path::new(target).components() {
            match c {
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    if !cur.pop() {
                        return Err(format!("symlink target {target:?} leaves the tree"));
                    }
                }
                Component::Normal(n) => {
                    cur.push(n);
                    if self.links.contains_key(&cur) {
                        let (resolved, d) = self.resolve(&cur, level + 1)?;
                        cur = resolved;
                        depth = depth.max(d + 1);
                    }
                }
            }
        }
        Ok((cur, depth))
    }

    /// The resolved path of the symlink at `link` (a key of `links`).
    fn resolve(&mut self, link: &Path, level: usize) -> Result<(PathBuf, usize), String> {
        if let Some(done) = self.memo.get(link) {
            return Ok(done.clone());
        }
        if level > MAX_LINK_DEPTH {
            return Err("too many levels of symbolic links".into());
        }
        if !self.active.insert(link.to_path_buf()) {
            return Err(format!(
                "symlink loop through {} (too many levels of symbolic links)",
                link.display()
            ));
        }
        let target = self.links.get(link).cloned().unwrap_or_default();
        let parent = link.parent().map(Path::to_path_buf).unwrap_or_default();
        let (resolved, depth) = self.walk(parent, &target, level)?;
        if depth > MAX_LINK_DEPTH {
            return Err("too many levels of symbolic links".into());
        }
        self.active.remove(link);
        self.memo
            .insert(link.to_path_buf(), (resolved.clone(), depth));
        Ok((resolved, depth))
    }
}

/// Resolve `target` of the symlink at `link` (both relative to the root)
/// lexically, following the package's other symlinks (`links`). Returns the
/// resolved relative path, or why it leaves the tree.
#[cfg(test)]
fn resolve_link(
    link: &Path,
    target: &str,
    source: bool,
    links: &HashMap<PathBuf, String>,
) -> Result<PathBuf, String> {
    let parent = link.parent().map(Path::to_path_buf).unwrap_or_default();
    LinkResolver::new(links, source)
        .walk(parent, target, 0)
        .map(|(p, _)| p)
}

/// The relative spelling of `to` as seen from directory `from_dir` (both
/// relative to the root).
fn relative_target(from_dir: &Path, to: &Path) -> String {
    let a: Vec<_> = from_dir.components().collect();
    let b: Vec<_> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..a.len() {
        out.push("..");
    }
    for c in &b[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        ".".into()
    } else {
        out.to_string_lossy().into_owned()
    }
}

fn open_reader(rpm: &Path) -> Result<Payload, UnpackError> {
    // The rpm crate trusts header counts and offsets; check them first.
    crate::publish::rpmcheck::check_file(rpm).map_err(|message| UnpackError::Rpm {
        rpm: rpm.to_path_buf(),
        message,
    })?;
    Payload::open(rpm).map_err(|e| UnpackError::Rpm {
        rpm: rpm.to_path_buf(),
        message: e.to_string(),
    })
}

/// The header path of a payload member: `./usr/x` is `/usr/x` in a binary
/// package; a source package's members are bare names.
fn member_path(name: &str, source: bool) -> String {
    let bare = name.strip_prefix("./").unwrap_or(name);
    if source {
        bare.to_string()
    } else {
        format!("/{bare}")
    }
}

/// Check every entry of the package before anything is written.
fn plan(rpm: &Path, reader: &Payload) -> Result<(bool, BTreeMap<String, Planned>), UnpackError> {
    let source = reader.metadata.is_source_package();
    let entries = reader
        .metadata
        .get_file_entries()
        .map_err(|e| UnpackError::Rpm {
            rpm: rpm.to_path_buf(),
            message: e.to_string(),
        })?;
    let unsafe_entry = |entry: &str, reason: String| UnpackError::Unsafe {
        rpm: rpm.to_path_buf(),
        entry: entry.to_string(),
        reason,
    };
    let mut planned = BTreeMap::new();
    let mut links: HashMap<PathBuf, String> = HashMap::new();
    for e in &entries {
        let shown = e.path().to_string_lossy().into_owned();
        if e.flags().contains(FileFlags::GHOST) {
            continue;
        }
        let rel = check_path(&shown, source).map_err(|r| unsafe_entry(&shown, r))?;
        let kind = e.file_type();
        match kind {
            FileType::Regular | FileType::Dir => {}
            FileType::SymbolicLink => {
                let t = e.linkto().unwrap_or("");
                if t.is_empty() {
                    return Err(unsafe_entry(&shown, "symlink without a target".into()));
                }
                links.insert(rel.clone(), t.to_string());
            }
            other => {
                return Err(unsafe_entry(
                    &shown,
                    format!("{other:?} entries (device nodes, FIFOs, sockets) are not allowed"),
                ))
            }
        }
        let key = rel.to_string_lossy().into_owned();
        let p = Planned {
            rel,
            kind,
            mode: u32::from(e.permissions()) & 0o777,
            size: e.size() as u64,
            digest: e.digest().map(|d| d.to_string()).filter(|d| !d.is_empty()),
            link: None,
        };
        if planned.insert(key, p).is_some() {
            return Err(unsafe_entry(&shown, "duplicate entry".into()));
        }
    }
    // Every symlink must resolve inside the tree, through the others; in
    // path order, so the error for a package with several bad links is
    // always the same one.
    let mut resolver = LinkResolver::new(&links, source);
    let mut ordered: Vec<&PathBuf> = links.keys().collect();
    ordered.sort();
    for rel in ordered {
        let target = &links[rel];
        let shown = if source {
            rel.display().to_string()
        } else {
            format!("/{}", rel.display())
        };
        let (resolved, _) = resolver
            .resolve(rel, 0)
            .map_err(|r| unsafe_entry(&shown, r))?;
        let from_dir = rel.parent().unwrap_or(Path::new(""));
        // Absolute targets of binary RPMs are re-rooted: written relative.
        let written = if target.starts_with('/') {
            relative_target(from_dir, &resolved)
        } else {
            target.clone()
        };
        if let Some(p) = planned.get_mut(&rel.to_string_lossy().into_owned()) {
            p.link = Some(written);
        }
    }
    // A directory or file under a symlink would be written through it: look
    // each entry's ancestors up (linear, not entries x links).
    for p in planned.values() {
        if let Some(l) = p.rel.ancestors().skip(1).find(|a| links.contains_key(*a)) {
            return Err(unsafe_entry(
                &p.rel.display().to_string(),
                format!("lies under the symlink {}", l.display()),
            ));
        }
    }
    Ok((source, planned))
}

/// Payload copy buffer: a kernel source tarball is hundreds of MiB, and
/// `io::copy`'s 8 KiB would mean tens of thousands of small writes.
const COPY_BUFFER: usize = 256 * 1024;

/// Create `dir` (and its parents) unless `made` says it exists.
fn ensure_dir(made: &mut std::collections::HashSet<PathBuf>, dir: &Path) -> std::io::Result<()> {
    if made.contains(dir) {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    for a in dir.ancestors() {
        if !made.insert(a.to_path_buf()) {
            break;
        }
    }
    Ok(())
}

/// The process umask, read without changing it (umask(2) can only set it,
/// and setting it for a moment races with other threads creating files).
/// Unknown: assume the most restrictive, so modes are always set.
fn process_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o777)
}

/// Unpack every entry of `rpm` under `dest`, which must not exist yet (its
/// parent must). Source RPM entries land directly in `dest`; binary RPM
/// entries keep their absolute layout re-rooted at `dest`.
pub fn unpack_rpm(rpm: &Path, dest: &Path) -> Result<Unpacked, UnpackError> {
    let io = |context: String| {
        move |source| UnpackError::Io {
            rpm: rpm.to_path_buf(),
            context,
            source,
        }
    };
    if dest.symlink_metadata().is_ok() {
        return Err(UnpackError::Io {
            rpm: rpm.to_path_buf(),
            context: format!("destination {} already exists", dest.display()),
            source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        });
    }
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut reader = open_reader(rpm)?;
    let (source, planned) = plan(rpm, &reader)?;

    let tmp = tempfile::Builder::new()
        .prefix(".khotfix-unpack-")
        .tempdir_in(parent)
        .map_err(io(format!(
            "creating a temporary directory in {}",
            parent.display()
        )))?;
    let root = tmp.path().to_path_buf();
    let mut entries = Vec::new();
    let mut written_by_digest: HashMap<String, PathBuf> = HashMap::new();
    let mut deferred: Vec<(PathBuf, Option<String>, u32)> = Vec::new();
    // Directories known to exist: a mkdir that fails with EEXIST still costs
    // a file system lookup, once per file otherwise.
    let mut made: std::collections::HashSet<PathBuf> = std::collections::HashSet::new();
    let umask = process_umask();
    let mut buf = vec![0u8; COPY_BUFFER];

    let bad_payload = |e: std::io::Error| UnpackError::Rpm {
        rpm: rpm.to_path_buf(),
        message: e.to_string(),
    };
    let mut seen = std::collections::HashSet::new();
    while let Some(m) = reader.next_member().map_err(bad_payload)? {
        let shown = member_path(&m.name, source);
        let rel = check_path(&shown, source).map_err(|r| UnpackError::Unsafe {
            rpm: rpm.to_path_buf(),
            entry: shown.clone(),
            reason: r,
        })?;
        let key = rel.to_string_lossy().into_owned();
        let Some(p) = planned.get(&key) else {
            return Err(UnpackError::Unsafe {
                rpm: rpm.to_path_buf(),
                entry: shown,
                reason: "payload entry not in the header's file list".into(),
            });
        };
        if !seen.insert(key) {
            return Err(UnpackError::Unsafe {
                rpm: rpm.to_path_buf(),
                entry: shown,
                reason: "payload holds this entry twice".into(),
            });
        }
        let target = root.join(&p.rel);
        match p.kind {
            FileType::Dir => {
                ensure_dir(&mut made, &target)
                    .map_err(io(format!("creating {}", p.rel.display())))?;
                entries.push(Entry {
                    path: p.rel.to_string_lossy().into_owned(),
                    kind: EntryKind::Dir,
                });
            }
            FileType::Regular => {
                let digest = p.digest.clone();
                if m.size == 0 && p.size > 0 {
                    // A hard link whose data comes with another member of its set.
                    deferred.push((p.rel.clone(), digest, p.mode));
                    continue;
                }
                if m.size != p.size {
                    return Err(UnpackError::Unsafe {
                        rpm: rpm.to_path_buf(),
                        entry: shown,
                        reason: format!(
                            "payload holds {} bytes, the header says {}",
                            m.size, p.size
                        ),
                    });
                }
                if let Some(dir) = target.parent() {
                    // Files come grouped by directory: one mkdir per
                    // directory, not one per file.
                    ensure_dir(&mut made, dir)
                        .map_err(io(format!("creating {}", dir.display())))?;
                }
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(p.mode | 0o600)
                    .open(&target)
                    .map_err(io(format!("creating {}", p.rel.display())))?;
                let size = reader
                    .copy_data(&mut out, &mut buf)
                    .map_err(io(format!("writing {}", p.rel.display())))?;
                out.flush()
                    .map_err(io(format!("writing {}", p.rel.display())))?;
                // The mode the header asks for, whatever the umask took away.
                if (p.mode | 0o600) & umask != 0 {
                    out.set_permissions(std::fs::Permissions::from_mode(p.mode | 0o600))
                        .map_err(io(format!("setting the mode of {}", p.rel.display())))?;
                }
                if let Some(d) = digest.filter(|d| !d.is_empty()) {
                    written_by_digest.entry(d).or_insert_with(|| p.rel.clone());
                }
                entries.push(Entry {
                    path: p.rel.to_string_lossy().into_owned(),
                    kind: EntryKind::File { size },
                });
            }
            // Symlinks are created last, so nothing is ever written through one.
            _ => {}
        }
    }
    for (rel, digest, mode) in deferred {
        let from = digest
            .as_ref()
            .and_then(|d| written_by_digest.get(d))
            .cloned();
        let target = root.join(&rel);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        let size = match from {
            Some(src) => std::fs::copy(root.join(&src), &target).map_err(io(format!(
                "copying {} to {}",
                src.display(),
                rel.display()
            )))?,
            None if digest.as_deref().map_or(true, str::is_empty) => {
                std::fs::File::create_new(&target)
                    .map_err(io(format!("creating {}", rel.display())))?;
                0
            }
            None => {
                return Err(UnpackError::Unsafe {
                    rpm: rpm.to_path_buf(),
                    entry: rel.display().to_string(),
                    reason: "file without payload data and no hard-link partner".into(),
                })
            }
        };
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode | 0o600))
            .map_err(io(format!("setting the mode of {}", rel.display())))?;
        entries.push(Entry {
            path: rel.to_string_lossy().into_owned(),
            kind: EntryKind::File { size },
        });
    }
    for p in planned
        .values()
        .filter(|p| p.kind == FileType::SymbolicLink)
    {
        let link = root.join(&p.rel);
        if let Some(dir) = link.parent() {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        let t = p.link.clone().unwrap_or_default();
        std::os::unix::fs::symlink(&t, &link)
            .map_err(io(format!("creating symlink {}", p.rel.display())))?;
        entries.push(Entry {
            path: p.rel.to_string_lossy().into_owned(),
            kind: EntryKind::Symlink { target: t },
        });
    }
    let root = tmp.keep();
    std::fs::rename(&root, dest).map_err(|e| {
        let _ = std::fs::remove_dir_all(&root);
        UnpackError::Io {
            rpm: rpm.to_path_buf(),
            context: format!("moving the unpacked tree to {}", dest.display()),
            source: e,
        }
    })?;
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Unpacked {
        rpm: rpm.to_path_buf(),
        dest: dest.to_path_buf(),
        source,
        entries,
    })
}

/// Extract one regular file (`member`, an absolute path for binary RPMs)
/// from `rpm` to `dest`, atomically. Streams the payload: a kernel-debuginfo
/// package is never held in memory whole.
pub fn extract_member(rpm: &Path, member: &str, dest: &Path) -> Result<u64, UnpackError> {
    let io = |context: String| {
        move |source| UnpackError::Io {
            rpm: rpm.to_path_buf(),
            context,
            source,
        }
    };
    let mut reader = open_reader(rpm)?;
    let entries = reader
        .metadata
        .get_file_entries()
        .map_err(|e| UnpackError::Rpm {
            rpm: rpm.to_path_buf(),
            message: e.to_string(),
        })?;
    let Some(entry) = entries
        .iter()
        .find(|e| e.path().to_string_lossy() == member)
    else {
        let name = Path::new(member)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let similar: Vec<String> = entries
            .iter()
            .map(|e| e.path().to_string_lossy().into_owned())
            .filter(|p| p.ends_with(&format!("/{name}")))
            .take(5)
            .collect();
        let hint = if similar.is_empty() {
            String::new()
        } else {
            format!(" (it has: {})", similar.join(", "))
        };
        return Err(UnpackError::Missing {
            rpm: rpm.to_path_buf(),
            message: format!("no {member} in the package{hint}"),
        });
    };
    if entry.file_type() != FileType::Regular {
        return Err(UnpackError::Unsafe {
            rpm: rpm.to_path_buf(),
            entry: member.to_string(),
            reason: format!("is a {:?}, not a regular file", entry.file_type()),
        });
    }
    let want_size = entry.size() as u64;
    drop(entries);
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let source = reader.metadata.is_source_package();
    while let Some(m) = reader.next_member().map_err(|e| UnpackError::Rpm {
        rpm: rpm.to_path_buf(),
        message: e.to_string(),
    })? {
        if member_path(&m.name, source) != member {
            continue;
        }
        if m.size == 0 && want_size > 0 {
            return Err(UnpackError::Missing {
                rpm: rpm.to_path_buf(),
                message: format!("{member} has no data in the payload"),
            });
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(".khotfix-tmp-")
            .tempfile_in(dir)
            .map_err(io(format!(
                "creating a temporary file in {}",
                dir.display()
            )))?;
        let mut buf = vec![0u8; COPY_BUFFER];
        let size = reader
            .copy_data(tmp.as_file_mut(), &mut buf)
            .map_err(io(format!("writing {}", dest.display())))?;
        tmp.as_file()
            .sync_all()
            .map_err(io(format!("syncing {}", dest.display())))?;
        tmp.persist(dest).map_err(|e| UnpackError::Io {
            rpm: rpm.to_path_buf(),
            context: format!("renaming into {}", dest.display()),
            source: e.error,
        })?;
        return Ok(size);
    }
    Err(UnpackError::Missing {
        rpm: rpm.to_path_buf(),
        message: format!("{member} is in the header but not in the payload"),
    })
}

/// Where kernel-debuginfo keeps the unstripped kernel.
pub fn debuginfo_vmlinux_path(kernel: &KernelRelease) -> String {
    format!("/usr/lib/debug/lib/modules/{}/vmlinux", kernel.as_str())
}

/// Extract `vmlinux` for `kernel` from its kernel-debuginfo RPM to `dest`.
pub fn extract_vmlinux(
    debuginfo_rpm: &Path,
    kernel: &KernelRelease,
    dest: &Path,
) -> Result<u64, UnpackError> {
    extract_member(debuginfo_rpm, &debuginfo_vmlinux_path(kernel), dest)
}

// ---- kernel config ---------------------------------------------------------

/// Find the kernel config for `kernel` of `distro`: in the unpacked source
/// RPM or headers root `root`, or in the prepared `tree`. The error lists
/// every path tried and the config-like files that are there.
/// Where to look is the distro's `kernel_config` ([`Distro::config_candidates`]).
pub fn find_config(
    distro: &Distro,
    kernel: &KernelRelease,
    arch: &str,
    root: &Path,
    tree: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    let candidates = distro.config_candidates(kernel, arch, root, tree);
    if let Some(found) = candidates
        .iter()
        .find(|c| c.symlink_metadata().is_ok_and(|m| m.is_file()))
    {
        return Ok(found.clone());
    }
    let mut present: Vec<String> = Vec::new();
    for dir in [Some(root.to_path_buf()), tree.map(|t| t.join("configs"))]
        .into_iter()
        .flatten()
    {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.contains("config") {
                    present.push(dir.join(&n).display().to_string());
                }
            }
        }
    }
    present.sort();
    let tried: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    anyhow::bail!(
        "no kernel config for {kernel} ({}): tried {}; config-like files present: {}",
        distro.name,
        tried.join(", "),
        if present.is_empty() {
            "none".to_string()
        } else {
            present.join(", ")
        }
    )
}

// ---- rpmbuild -bp ----------------------------------------------------------

/// Architectures `rpmbuild --target` accepts for kernels we build.
const TARGET_ARCHES: &[&str] = &["x86_64", "aarch64", "ppc64le", "s390x", "i686"];

/// The `rpmbuild -bp` step for a RHEL-family source RPM, as kpatch-build runs
/// it: `rpmbuild -D "_topdir T" -bp --nodeps --target=ARCH T/SPECS/SPEC`.
/// The container engineer runs [`RpmbuildPrep::argv`] inside the builder; paths
/// are as the container sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RpmbuildPrep {
    /// `_topdir` (holds SPECS/ SOURCES/ BUILD/), absolute, as seen by rpmbuild.
    pub topdir: PathBuf,
    /// Spec file name inside `SPECS/` (`kernel.spec`).
    pub spec: String,
    /// `--target` architecture.
    pub arch: String,
}

impl RpmbuildPrep {
    /// Validate and build. Every value ends up in an argv (not a shell), but
    /// rpm splits macro definitions at whitespace, so the top directory must
    /// be plain: absolute, no `..`, only `[A-Za-z0-9/._+-]`.
    pub fn new(topdir: &Path, spec: &str, arch: &str) -> Result<RpmbuildPrep, String> {
        let t = topdir.to_str().ok_or("rpmbuild topdir is not UTF-8")?;
        validate::host_path("rpmbuild topdir", t)?;
        if t.contains(['%', ':', '@']) {
            return Err(format!(
                "rpmbuild topdir {t:?} contains a character rpm treats specially"
            ));
        }
        validate::package_token("spec file name", spec)?;
        if !spec.ends_with(".spec") {
            return Err(format!("spec file name {spec:?} must end in .spec"));
        }
        if !TARGET_ARCHES.contains(&arch) {
            return Err(format!(
                "rpmbuild target {arch:?} is not one of {}",
                TARGET_ARCHES.join(", ")
            ));
        }
        Ok(RpmbuildPrep {
            topdir: topdir.to_path_buf(),
            spec: spec.to_string(),
            arch: arch.to_string(),
        })
    }

    /// The command, argv[0] first.
    pub fn argv(&self) -> Vec<String> {
        let t = self.topdir.display().to_string();
        vec![
            "rpmbuild".into(),
            "--define".into(),
            format!("_topdir {t}"),
            "-bp".into(),
            "--nodeps".into(),
            format!("--target={}", self.arch),
            format!("{t}/SPECS/{}", self.spec),
        ]
    }

    /// Where the prepared tree is after the run, given the host path of the
    /// same top directory: `BUILD/kernel-*/linux-*` (exactly one).
    pub fn find_tree(host_topdir: &Path) -> anyhow::Result<PathBuf> {
        let build = host_topdir.join("BUILD");
        let mut found = Vec::new();
        let rd = std::fs::read_dir(&build)
            .map_err(|e| anyhow::anyhow!("{}: {e} (did rpmbuild -bp run?)", build.display()))?;
        for outer in rd.flatten() {
            let on = outer.file_name().to_string_lossy().into_owned();
            if !on.starts_with("kernel") || !outer.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if let Ok(inner) = std::fs::read_dir(outer.path()) {
                for i in inner.flatten() {
                    let n = i.file_name().to_string_lossy().into_owned();
                    if n.starts_with("linux-") && i.file_type().is_ok_and(|t| t.is_dir()) {
                        found.push(i.path());
                    }
                }
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => anyhow::bail!(
                "{}: no kernel-*/linux-* tree after rpmbuild -bp",
                build.display()
            ),
            _ => {
                found.sort();
                let list: Vec<_> = found.iter().map(|p| p.display().to_string()).collect();
                anyhow::bail!(
                    "{}: more than one kernel tree: {}",
                    build.display(),
                    list.join(", ")
                )
            }
        }
    }
}

/// An rpmbuild top directory laid out from a source RPM (what `rpm -i
/// x.src.rpm` does, but safely): the spec in `SPECS/`, the rest in `SOURCES/`.
#[derive(Debug, Clone, Serialize)]
pub struct Topdir {
    pub path: PathBuf,
    pub spec: String,
    pub sources: Vec<String>,
}

/// Unpack `srpm` into a new rpmbuild top directory `topdir` (must not exist).
pub fn layout_topdir(srpm: &Path, topdir: &Path) -> anyhow::Result<Topdir> {
    let parent = topdir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".khotfix-topdir-")
        .tempdir_in(parent)?;
    let un = unpack_rpm(srpm, &tmp.path().join("SOURCES"))?;
    if !un.source {
        anyhow::bail!("{}: not a source RPM", srpm.display());
    }
    let specs: Vec<String> = un
        .files()
        .filter(|f| f.ends_with(".spec") && !f.contains('/'))
        .map(str::to_string)
        .collect();
    let spec = match specs.as_slice() {
        [one] => one.clone(),
        [] => anyhow::bail!("{}: no .spec file in the source RPM", srpm.display()),
        many => anyhow::bail!(
            "{}: more than one .spec file: {}",
            srpm.display(),
            many.join(", ")
        ),
    };
    std::fs::create_dir_all(tmp.path().join("SPECS"))?;
    std::fs::create_dir_all(tmp.path().join("BUILD"))?;
    std::fs::rename(
        tmp.path().join("SOURCES").join(&spec),
        tmp.path().join("SPECS").join(&spec),
    )?;
    let sources = un
        .files()
        .filter(|f| *f != spec)
        .map(str::to_string)
        .collect();
    let kept = tmp.keep();
    std::fs::rename(&kept, topdir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&kept);
        anyhow::anyhow!("moving the top directory to {}: {e}", topdir.display())
    })?;
    Ok(Topdir {
        path: topdir.to_path_buf(),
        spec,
        sources,
    })
}

/// Set the tree's `EXTRAVERSION` so the built objects carry the target
/// kernel's release (kpatch-build does this for trees it prepares itself;
/// with `-s` on a tree we prepared, it is ours to do): `-18.al8.x86_64` for
/// `5.10.134-18.al8.x86_64`.
pub fn set_extraversion(tree: &Path, kernel: &KernelRelease) -> anyhow::Result<()> {
    let makefile = tree.join("Makefile");
    let text = std::fs::read_to_string(&makefile)
        .map_err(|e| anyhow::anyhow!("{}: {e}", makefile.display()))?;
    let extra = kernel
        .as_str()
        .split_once('-')
        .map(|(_, r)| r)
        .unwrap_or("");
    validate::package_token("kernel release", extra).map_err(anyhow::Error::msg)?;
    let mut done = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if !done && l.starts_with("EXTRAVERSION") {
                done = true;
                format!("EXTRAVERSION = -{extra}")
            } else {
                l.to_string()
            }
        })
        .collect();
    if !done {
        anyhow::bail!("{}: no EXTRAVERSION line", makefile.display());
    }
    crate::util::fsx::write_atomic(&makefile, (out.join("\n") + "\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            check_path("kernel.spec", true).unwrap(),
            PathBuf::from("kernel.spec")
        );
        assert!(check_path("/etc/passwd", true)
            .unwrap_err()
            .contains("absolute"));
        assert!(check_path("../x", true).unwrap_err().contains(".."));
        assert!(check_path("a/../../x", true).unwrap_err().contains(".."));
        assert!(check_path("a\0b", true).unwrap_err().contains("NUL"));
        assert_eq!(
            check_path("/usr/lib/x", false).unwrap(),
            PathBuf::from("usr/lib/x")
        );
        assert!(check_path("/usr/../../x", false).is_err());
        assert!(check_path("/", false).is_err());
        assert!(check_path("usr/x", false).is_err());
    }

    #[test]
    fn links() {
        let none = HashMap::new();
        let r = |l: &str, t: &str, src: bool, m: &HashMap<PathBuf, String>| {
            resolve_link(Path::new(l), t, src, m)
        };
        assert_eq!(
            r("a/b/l", "../c", false, &none).unwrap(),
            PathBuf::from("a/c")
        );
        assert!(r("a/l", "../../etc", false, &none).is_err());
        assert!(r("l", "/etc/passwd", true, &none).is_err());
        assert_eq!(
            r("usr/l", "/etc/passwd", false, &none).unwrap(),
            PathBuf::from("etc/passwd")
        );
        // Through another link: `d` -> `..` (fine alone), then `x` -> `d/..` escapes.
        let mut m = HashMap::new();
        m.insert(PathBuf::from("sub/d"), "..".to_string());
        assert_eq!(r("sub/d", "..", false, &m).unwrap(), PathBuf::new());
        assert!(r("sub/x", "d/..", false, &m).is_err());
        // A loop.
        let mut m = HashMap::new();
        m.insert(PathBuf::from("a"), "b".to_string());
        m.insert(PathBuf::from("b"), "a".to_string());
        assert!(r("a", "b", false, &m).unwrap_err().contains("levels"));
    }

    #[test]
    fn relative_targets() {
        assert_eq!(
            relative_target(Path::new("lib/modules/k"), Path::new("usr/src/kernels/k")),
            "../../../usr/src/kernels/k"
        );
        assert_eq!(relative_target(Path::new(""), Path::new("a")), "a");
    }

    #[test]
    fn rpmbuild_args() {
        let p = RpmbuildPrep::new(Path::new("/work/topdir"), "kernel.spec", "x86_64").unwrap();
        assert_eq!(
            p.argv(),
            [
                "rpmbuild",
                "--define",
                "_topdir /work/topdir",
                "-bp",
                "--nodeps",
                "--target=x86_64",
                "/work/topdir/SPECS/kernel.spec"
            ]
        );
        assert!(RpmbuildPrep::new(Path::new("rel"), "kernel.spec", "x86_64").is_err());
        assert!(RpmbuildPrep::new(Path::new("/a b"), "kernel.spec", "x86_64").is_err());
        assert!(RpmbuildPrep::new(Path::new("/a/../b"), "kernel.spec", "x86_64").is_err());
        assert!(RpmbuildPrep::new(Path::new("/a/%{x}"), "kernel.spec", "x86_64").is_err());
        assert!(RpmbuildPrep::new(Path::new("/a"), "../kernel.spec", "x86_64").is_err());
        assert!(RpmbuildPrep::new(Path::new("/a"), "kernel.tar", "x86_64").is_err());
        assert!(RpmbuildPrep::new(Path::new("/a"), "kernel.spec", "x86_64; id").is_err());
    }

    #[test]
    fn config_table() {
        let centos7 = Distro::builtin("centos7").unwrap();
        let k = KernelRelease::parse("3.10.0-1062.9.1.el7.x86_64").unwrap();
        let c = centos7.config_candidates(&k, "x86_64", Path::new("/s"), None);
        assert_eq!(
            c,
            vec![
                PathBuf::from("/s/kernel-3.10.0-x86_64.config"),
                PathBuf::from("/s/kernel-x86_64.config")
            ]
        );
        let d = KernelRelease::parse("6.1.0-56-amd64").unwrap();
        let debian12 = Distro::builtin("debian12").unwrap();
        let c = debian12.config_candidates(&d, "amd64", Path::new("/"), None);
        assert_eq!(
            c,
            vec![PathBuf::from(
                "/usr/src/linux-headers-6.1.0-56-amd64/.config"
            )]
        );
        let e = find_config(&centos7, &k, "x86_64", Path::new("/nonexistent"), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tried /nonexistent/kernel-3.10.0-x86_64.config"),
            "{e}"
        );
    }
}
