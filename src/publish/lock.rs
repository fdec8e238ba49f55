//! The publisher lock: `flock` on `DIR/.khotfix.lock`.
//!
//! flock is released by the kernel when the holder dies (kill -9 included),
//! so a crashed publisher never leaves the repository locked. The lock file
//! is opened with O_NOFOLLOW: a symlink there is refused, not followed.

use anyhow::{Context, Result};
use fs2::FileExt;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Held for the lifetime of the value.
pub struct RepoLock {
    _file: File,
}

impl RepoLock {
    /// Block until no other publisher holds the lock.
    pub fn acquire(repo: &Path) -> Result<Self> {
        Self::open(repo, true).map(|l| l.expect("created"))
    }

    /// [`acquire`](Self::acquire) the lock of a repository published to
    /// before (its lock file exists); `None`, and nothing created, when it
    /// does not or cannot be opened or locked (a planted symlink, say): the
    /// caller then takes the ordinary path, whose checks and
    /// [`acquire`](Self::acquire) report the problem in the right words.
    pub fn acquire_existing(repo: &Path) -> Option<Self> {
        Self::open(repo, false).ok().flatten()
    }

    fn open(repo: &Path, create: bool) -> Result<Option<Self>> {
        let path = repo.join(".khotfix.lock");
        let file = match std::fs::OpenOptions::new()
            .create(create)
            .truncate(false)
            .write(true)
            // A planted symlink must not make us create a file elsewhere.
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("opening the lock {}", path.display()));
            }
        };
        file.lock_exclusive()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(Some(RepoLock { _file: file }))
    }
}
