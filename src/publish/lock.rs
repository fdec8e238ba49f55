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
        let path = repo.join(".khotfix.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            // A planted symlink must not make us create a file elsewhere.
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .with_context(|| format!("opening the lock {}", path.display()))?;
        file.lock_exclusive()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(RepoLock { _file: file })
    }
}
