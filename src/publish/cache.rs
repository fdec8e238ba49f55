//! Per-package metadata cache, so a publish only reads the headers of
//! packages that are new or changed.
//!
//! Stored as one JSON file, `DIR/.khotfix-cache/packages.json`, written
//! atomically after each commit. An entry is reused only when the file's
//! name, size, mtime (to the nanosecond) and inode all still match; its
//! sha256 is then trusted (that is the point: not re-reading the file). A
//! missing, stale or unreadable cache only costs time, never correctness.

use super::rpmmeta::PackageMeta;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const VERSION: u32 = 1;

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatKey {
    pub size: u64,
    pub mtime_ns: i128,
    pub ino: u64,
}

impl StatKey {
    pub fn of(md: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        StatKey {
            size: md.len(),
            mtime_ns: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
            ino: md.ino(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub stat: StatKey,
    pub meta: PackageMeta,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cache {
    version: u32,
    /// Keyed by file name inside `Packages/`.
    pub entries: HashMap<String, Entry>,
}

pub fn path(repo: &Path) -> PathBuf {
    repo.join(".khotfix-cache").join("packages.json")
}

impl Cache {
    /// Load the cache; anything unreadable yields an empty cache.
    pub fn load(repo: &Path) -> Self {
        let p = path(repo);
        let Ok(bytes) = std::fs::read(&p) else {
            return Cache {
                version: VERSION,
                entries: HashMap::new(),
            };
        };
        match serde_json::from_slice::<Cache>(&bytes) {
            Ok(c) if c.version == VERSION => c,
            _ => Cache {
                version: VERSION,
                entries: HashMap::new(),
            },
        }
    }

    /// The cached metadata for `name` if the file is unchanged.
    pub fn lookup(&self, name: &str, stat: &StatKey) -> Option<&PackageMeta> {
        self.entries
            .get(name)
            .filter(|e| e.stat == *stat && e.meta.size_package == stat.size)
            .map(|e| &e.meta)
    }

    pub fn save(repo: &Path, entries: HashMap<String, Entry>) -> Result<()> {
        let c = Cache {
            version: VERSION,
            entries,
        };
        let bytes = serde_json::to_vec(&c).context("serialising the package cache")?;
        crate::util::fsx::write_atomic(&path(repo), &bytes)
    }
}
