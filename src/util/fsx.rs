//! File-system helpers: atomic writes so no reader (and no crash) ever sees a
//! half-written file.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` atomically: a temporary file in the same directory,
/// fsync, rename over the target, fsync the directory. The file is private
/// (0600, the temporary file's mode).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_mode(path, bytes, None)
}

/// [`write_atomic`], the file getting `mode` (e.g. 0644 for what a web
/// server serves) before it appears under its name.
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<()> {
    let (dir, mut tmp) = temp_beside(path)?;
    tmp.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming into {}", path.display()))?;
    sync_dir(dir)
}

/// Write `parts` to `path` through a temporary file renamed over it, so no
/// reader sees half a file, but without [`write_atomic`]'s fsyncs: for
/// outputs that are reproduced exactly by running the step again (a signed
/// module), where the fsyncs cost more than the work.
pub fn write_replacing(path: &Path, parts: &[&[u8]]) -> Result<()> {
    let (_, mut tmp) = temp_beside(path)?;
    for p in parts {
        tmp.write_all(p)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let tmp = tmp.into_temp_path();
    // Only a regular file is exchanged: a directory (or anything else) at
    // `path` must make the rename fail as before, not be moved aside.
    let replaces_file = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
    match replaces_file.then(|| exchange(&tmp, path)) {
        // `tmp` now names the old file; dropping the guard removes it.
        Some(Ok(())) => tmp
            .close()
            .with_context(|| format!("removing the replaced {}", path.display())),
        None | Some(Err(_)) => tmp
            .persist(path)
            .map_err(|e| e.error)
            .with_context(|| format!("renaming into {}", path.display())),
    }
}

/// Swap the names of `a` and `b` atomically (renameat2 RENAME_EXCHANGE).
/// Fails when `b` does not exist or the filesystem cannot exchange.
/// [`write_replacing`] then renames: replacing through an exchange instead of a rename
/// over `b` skips ext4's `auto_da_alloc` heuristic, which starts writeback
/// of the new file inside rename(2) for programs that replace without
/// fsync: 0.9 ms of a 12 ms `khotfix sign` of a 2 MB module. Readers see the
/// old or the new file either way; [`write_replacing`] is only for outputs a
/// re-run reproduces, so the early writeback buys nothing there.
pub fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: two NUL-terminated paths that outlive the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A temporary file in `path`'s directory (created if missing), to be
/// renamed over `path`; and that directory.
fn temp_beside(path: &Path) -> Result<(&Path, tempfile::NamedTempFile)> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".khotfix-tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    Ok((dir, tmp))
}

/// fsync a directory so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let f = std::fs::File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// sha256 of a file, streamed, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    use crate::util::libcrypto::{Digest, Hasher};
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Hasher::new(Digest::Sha256)?;
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(h.finish()?))
}

/// An exclusive advisory lock on `path` (created if missing), held until the
/// returned file is dropped; blocks while another process or thread holds it.
pub fn lock_exclusive(path: &Path) -> Result<std::fs::File> {
    use fs2::FileExt;
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.lock_exclusive()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(f)
}

/// `lstat` of `name` inside the open directory `dir` (fstatat with
/// AT_SYMLINK_NOFOLLOW): no path walk, which is most of a stat's cost when a
/// directory of 10,000 packages is listed.
pub fn lstat_at(dir: &std::fs::File, name: &str) -> std::io::Result<libc::stat> {
    use std::os::fd::AsRawFd;
    let c = std::ffi::CString::new(name)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: zeroed is a valid `stat`; fstatat only writes into it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid directory fd, a NUL-terminated name and a live buffer.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(st)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Read the file `name` of the open directory `dir` into `buf` (cleared
/// first; its capacity is kept for the next file): no path walk and no
/// size query, the two system calls of `std::fs::read` that a loop over
/// 2,000 small packages does not need. Symlinks are not followed.
pub fn read_at(dir: &std::fs::File, name: &str, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let c = std::ffi::CString::new(name)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid directory fd and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by this File alone.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    buf.clear();
    std::io::Read::read_to_end(&mut f, buf).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/f.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let leftovers: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }

    #[test]
    fn replacing_write_creates_then_exchanges_and_removes_the_old_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/m.ko");
        write_replacing(&p, &[b"o", b"ne"]).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        // A reader holding the old file keeps its content.
        let mut old = std::fs::File::open(&p).unwrap();
        write_replacing(&p, &[b"two"]).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mut held = String::new();
        std::io::Read::read_to_string(&mut old, &mut held).unwrap();
        assert_eq!(held, "one");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["m.ko"]);
    }

    #[test]
    fn read_at_reads_whole_files_and_no_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let big = vec![7u8; 100_000];
        std::fs::write(d.path().join("big"), &big).unwrap();
        std::fs::write(d.path().join("small"), b"abc").unwrap();
        std::os::unix::fs::symlink("big", d.path().join("link")).unwrap();
        let dir = std::fs::File::open(d.path()).unwrap();
        let mut buf = Vec::new();
        read_at(&dir, "big", &mut buf).unwrap();
        assert_eq!(buf, big);
        read_at(&dir, "small", &mut buf).unwrap();
        assert_eq!(buf, b"abc");
        assert!(read_at(&dir, "link", &mut buf).is_err());
        assert!(read_at(&dir, "missing", &mut buf).is_err());
    }

    #[test]
    fn replacing_write_refuses_a_directory_and_replaces_a_symlink_itself() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("out.ko");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("inside"), b"keep").unwrap();
        assert!(write_replacing(&dir, &[b"x"]).is_err());
        assert_eq!(std::fs::read(dir.join("inside")).unwrap(), b"keep");
        let target = d.path().join("target");
        std::fs::write(&target, b"old").unwrap();
        let link = d.path().join("link.ko");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_replacing(&link, &[b"new"]).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
        assert_eq!(std::fs::read(&link).unwrap(), b"new");
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        let mut names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["link.ko", "out.ko", "target"]);
    }

    #[test]
    fn exchange_needs_both_names() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::write(&a, "a").unwrap();
        assert!(exchange(&a, &b).is_err());
        std::fs::write(&b, "b").unwrap();
        exchange(&a, &b).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"b");
        assert_eq!(std::fs::read(&b).unwrap(), b"a");
    }
}
