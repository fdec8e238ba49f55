//! The build cache: a finished module stored under the sha256 of every input
//! that can change it (kernel packages, patches, module source tree, recipe
//! fields that matter, builder image id, backend, kpatch flags). An unchanged
//! job is served from here instead of being rebuilt.
//!
//! Layout: `<root>/<key>/{<module file>, build.json}`, each entry written in a
//! temporary directory and renamed into place, so a reader never sees half of
//! one.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Incrementally hashes labelled inputs; every value is length-prefixed so
/// no two different input lists hash alike.
pub struct KeyBuilder {
    h: Sha256,
}

impl Default for KeyBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyBuilder {
    pub fn new() -> Self {
        let mut k = KeyBuilder { h: Sha256::new() };
        k.field("format", "khotfix-build-cache-v1");
        k
    }

    fn bytes(&mut self, b: &[u8]) {
        self.h.update((b.len() as u64).to_le_bytes());
        self.h.update(b);
    }

    /// A named value.
    pub fn field(&mut self, name: &str, value: &str) -> &mut Self {
        self.bytes(b"F");
        self.bytes(name.as_bytes());
        self.bytes(value.as_bytes());
        self
    }

    /// A file's contents (by digest) under a name.
    pub fn file(&mut self, name: &str, path: &Path) -> Result<&mut Self> {
        let d = crate::util::fsx::sha256_file(path)?;
        Ok(self.field(name, &d))
    }

    /// A directory tree: every entry's relative path, type, executable bit and
    /// contents (symlinks by target), in sorted order.
    pub fn tree(&mut self, name: &str, dir: &Path) -> Result<&mut Self> {
        use std::os::unix::fs::PermissionsExt;
        self.field("tree", name);
        for e in walkdir::WalkDir::new(dir)
            .min_depth(1)
            .sort_by_file_name()
            .follow_links(false)
        {
            let e = e.with_context(|| format!("reading {}", dir.display()))?;
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap_or(e.path())
                .to_string_lossy()
                .into_owned();
            let ft = e.file_type();
            if ft.is_dir() {
                self.field("d", &rel);
            } else if ft.is_symlink() {
                let t = std::fs::read_link(e.path())?;
                self.field("l", &rel).field("->", &t.to_string_lossy());
            } else if ft.is_file() {
                let exec = e.metadata()?.permissions().mode() & 0o111 != 0;
                self.field(if exec { "x" } else { "f" }, &rel);
                self.file("content", e.path())?;
            }
        }
        self.field("end-tree", name);
        Ok(self)
    }

    pub fn finish(self) -> String {
        hex::encode(self.h.finalize())
    }
}

/// What is stored beside a cached module.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CacheEntry {
    pub key: String,
    pub job: String,
    pub module_file: String,
    pub module_sha256: String,
    pub builder_image: String,
    pub created: String,
}

/// A build cache rooted at a directory.
#[derive(Debug, Clone)]
pub struct BuildCache {
    pub root: PathBuf,
}

impl BuildCache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        BuildCache { root: root.into() }
    }

    fn dir(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// The cached module for `key`, if present and intact.
    pub fn get(&self, key: &str) -> Option<(PathBuf, CacheEntry)> {
        let dir = self.dir(key);
        let meta: CacheEntry =
            serde_json::from_slice(&std::fs::read(dir.join("build.json")).ok()?).ok()?;
        let ko = dir.join(&meta.module_file);
        // A damaged entry is a miss, not an error: it will be rebuilt and replaced.
        let digest = crate::util::fsx::sha256_file(&ko).ok()?;
        (meta.key == key && digest == meta.module_sha256).then_some((ko, meta))
    }

    /// Store `module` under `key` (atomically replacing any old entry).
    pub fn put(
        &self,
        key: &str,
        job: &str,
        module: &Path,
        builder_image: &str,
    ) -> Result<CacheEntry> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("creating {}", self.root.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&self.root)
            .with_context(|| {
                format!("creating a temporary directory in {}", self.root.display())
            })?;
        let file_name = module
            .file_name()
            .and_then(|s| s.to_str())
            .context("module path has no file name")?
            .to_string();
        std::fs::copy(module, tmp.path().join(&file_name))
            .with_context(|| format!("copying {} into the build cache", module.display()))?;
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let entry = CacheEntry {
            key: key.to_string(),
            job: job.to_string(),
            module_file: file_name,
            module_sha256: crate::util::fsx::sha256_file(module)?,
            builder_image: builder_image.to_string(),
            created: now,
        };
        crate::util::fsx::write_atomic(
            &tmp.path().join("build.json"),
            serde_json::to_string_pretty(&entry)?.as_bytes(),
        )?;
        let dest = self.dir(key);
        if dest.exists() {
            std::fs::remove_dir_all(&dest)
                .with_context(|| format!("replacing {}", dest.display()))?;
        }
        let tmp = tmp.keep();
        std::fs::rename(&tmp, &dest)
            .with_context(|| format!("renaming into {}", dest.display()))?;
        crate::util::fsx::sync_dir(&self.root)?;
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_changes_with_every_input() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.c"), "int x;").unwrap();
        let key = |extra: &str| {
            let mut k = KeyBuilder::new();
            k.field("backend", "kbuild").tree("src", d.path()).unwrap();
            k.field("extra", extra);
            k.finish()
        };
        let k1 = key("");
        assert_eq!(k1, key(""));
        assert_ne!(k1, key("x"));
        std::fs::write(d.path().join("a.c"), "int y;").unwrap();
        assert_ne!(k1, key(""));
        // Field boundaries matter: ("ab","c") differs from ("a","bc").
        let mut a = KeyBuilder::new();
        a.field("ab", "c");
        let mut b = KeyBuilder::new();
        b.field("a", "bc");
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn put_get_and_damage() {
        let d = tempfile::tempdir().unwrap();
        let c = BuildCache::new(d.path().join("cache"));
        let ko = d.path().join("kpatch-1.ko");
        std::fs::write(&ko, b"module").unwrap();
        assert!(c.get("k").is_none());
        c.put("k", "job", &ko, "img").unwrap();
        let (p, e) = c.get("k").unwrap();
        assert_eq!(std::fs::read(p).unwrap(), b"module");
        assert_eq!(e.job, "job");
        std::fs::write(d.path().join("cache/k/kpatch-1.ko"), b"damaged").unwrap();
        assert!(c.get("k").is_none());
    }
}
