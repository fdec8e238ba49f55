//! The download cache: content-addressed by digest.
//!
//! Layout under the cache root:
//!
//! ```text
//! objects/<algo>/<hex[..2]>/<hex>/<file name>   verified files only
//! partial/<algo>-<hex>.part (+ .lock)            downloads in progress
//! metadata/<repomd sha256>.json                  parsed repository metadata
//! unpacked/<sha256>/                             Debian packages, dpkg-deb -x
//! ```
//!
//! A file reaches `objects/` only by a rename after its digest matched, and the
//! rename happens after an fsync: a reader (or a run after kill -9) sees either
//! nothing or the whole verified file, never a partial one.

use super::digest::{Algo, Checksum};
use crate::util::fsx;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Environment variable that overrides the cache location.
pub const ENV_CACHE_DIR: &str = "KHOTFIX_CACHE_DIR";

/// A cache rooted at one directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// Where the cache lives: `explicit` (`--cache-dir`), else
    /// `$KHOTFIX_CACHE_DIR`, else `$XDG_CACHE_HOME/khotfix`, else
    /// `$HOME/.cache/khotfix`.
    pub fn default_root(explicit: Option<&Path>) -> Result<PathBuf> {
        if let Some(p) = explicit {
            return Ok(p.to_path_buf());
        }
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(p) = env(ENV_CACHE_DIR) {
            return Ok(p);
        }
        if let Some(p) = env("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
            return Ok(p.join("khotfix"));
        }
        match env("HOME") {
            Some(h) => Ok(h.join(".cache").join("khotfix")),
            None => bail!(
                "cannot place the cache: set --cache-dir, {ENV_CACHE_DIR}, XDG_CACHE_HOME or HOME"
            ),
        }
    }

    /// Open (creating) the cache at `root`.
    pub fn open(root: &Path) -> Result<Cache> {
        for sub in ["objects", "partial", "metadata", "unpacked"] {
            let d = root.join(sub);
            std::fs::create_dir_all(&d)
                .with_context(|| format!("creating cache directory {}", d.display()))?;
        }
        Ok(Cache {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn object_dir(&self, c: &Checksum) -> PathBuf {
        self.root
            .join("objects")
            .join(c.algo.name())
            .join(&c.hex[..2])
            .join(&c.hex)
    }

    /// The verified file with this digest, if the cache holds it.
    pub fn lookup(&self, c: &Checksum) -> Option<PathBuf> {
        let dir = self.object_dir(c);
        let rd = std::fs::read_dir(&dir).ok()?;
        rd.filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .find(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .map(|e| e.path())
    }

    /// Where a download of this digest is assembled.
    pub fn partial_path(&self, key: &str) -> PathBuf {
        self.root.join("partial").join(format!("{key}.part"))
    }

    /// Lock file serialising downloads of one digest between processes.
    pub fn lock_path(&self, key: &str) -> PathBuf {
        self.root.join("partial").join(format!("{key}.lock"))
    }

    /// Move a verified file into the store under its digest and `file_name`
    /// (fsync the file, rename, fsync the directory). Returns the final path.
    pub fn commit(&self, verified: &Path, c: &Checksum, file_name: &str) -> Result<PathBuf> {
        check_file_name(file_name)?;
        if let Some(existing) = self.lookup(c) {
            let _ = std::fs::remove_file(verified);
            return Ok(existing);
        }
        let dir = self.object_dir(c);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::File::open(verified)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", verified.display()))?;
        let dest = dir.join(file_name);
        std::fs::rename(verified, &dest)
            .with_context(|| format!("moving {} into the cache", verified.display()))?;
        fsx::sync_dir(&dir)?;
        Ok(dest)
    }

    /// Parsed repository metadata, keyed by the sha256 of repomd.xml.
    pub fn metadata_path(&self, repomd_sha256: &str) -> PathBuf {
        self.root
            .join("metadata")
            .join(format!("{repomd_sha256}.json"))
    }

    /// Where a Debian package with this sha256 is unpacked.
    pub fn unpacked_dir(&self, sha256: &str) -> PathBuf {
        self.root.join("unpacked").join(sha256)
    }

    /// A scratch directory on the cache's file system (renames stay atomic).
    pub fn scratch_dir(&self) -> Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(self.root.join("partial"))
            .with_context(|| format!("creating a temporary directory in {}", self.root.display()))
    }

    /// Re-hash every stored object; returns the ones whose content does not
    /// match their name (should always be empty).
    pub fn verify_all(&self) -> Result<Vec<PathBuf>> {
        let mut bad = Vec::new();
        for algo_dir in std::fs::read_dir(self.root.join("objects"))? {
            let algo_dir = algo_dir?;
            let Ok(algo) = Algo::parse(&algo_dir.file_name().to_string_lossy()) else {
                bad.push(algo_dir.path());
                continue;
            };
            for entry in walkdir::WalkDir::new(algo_dir.path())
                .min_depth(3)
                .max_depth(3)
            {
                let entry = entry?;
                if !entry.file_type().is_file() {
                    continue;
                }
                let expected = entry
                    .path()
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().to_string());
                let mut h = algo.hasher();
                let mut f = std::fs::File::open(entry.path())?;
                std::io::copy(&mut f, &mut HashWriter(&mut h))?;
                if Some(h.finish().hex) != expected {
                    bad.push(entry.path().to_path_buf());
                }
            }
        }
        Ok(bad)
    }

    /// Every verified object's path.
    pub fn objects(&self) -> Result<Vec<PathBuf>> {
        let mut v = Vec::new();
        for e in walkdir::WalkDir::new(self.root.join("objects"))
            .min_depth(4)
            .max_depth(4)
        {
            let e = e?;
            if e.file_type().is_file() {
                v.push(e.path().to_path_buf());
            }
        }
        v.sort();
        Ok(v)
    }
}

/// Adapts a [`super::digest::Hasher`] to `io::Write`.
pub(crate) struct HashWriter<'a>(pub &'a mut super::digest::Hasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A file name from metadata that becomes a path component in the cache:
/// one component, no leading dot, only characters RPM and Debian file names use.
pub fn check_file_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 255 {
        bail!("file name {name:?} must be 1 to 255 characters");
    }
    if name.starts_with('.') || name.starts_with('-') {
        bail!("file name {name:?} must not start with '.' or '-'");
    }
    if let Some(c) = name.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-' | '~' | '^' | ':'))
    }) {
        bail!("file name {name:?} contains {c:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::digest::digest;

    #[test]
    fn commit_and_lookup() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::open(d.path()).unwrap();
        let sum = digest(Algo::Sha256, b"hello");
        assert!(c.lookup(&sum).is_none());
        let p = c.partial_path("x");
        std::fs::write(&p, b"hello").unwrap();
        let dest = c.commit(&p, &sum, "a.rpm").unwrap();
        assert_eq!(c.lookup(&sum).unwrap(), dest);
        assert!(c.verify_all().unwrap().is_empty());
        assert_eq!(c.objects().unwrap(), vec![dest]);
    }

    #[test]
    fn file_names() {
        assert!(check_file_name("kernel-3.10.0-1062.el7.src.rpm").is_ok());
        assert!(check_file_name("../x").is_err());
        assert!(check_file_name("a/b").is_err());
        assert!(check_file_name(".hidden").is_err());
    }
}
