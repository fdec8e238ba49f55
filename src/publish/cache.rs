//! Per-package metadata cache, so a publish neither reads nor re-renders
//! packages that are unchanged.
//!
//! Stored as one compact binary file, `DIR/.khotfix-cache/packages.bin`,
//! replaced atomically after each commit. Each entry holds the stat key, the
//! few fields ordering and retention need (name, EVR, arch, location), and
//! the package's already rendered `<package>` fragments of primary.xml,
//! filelists.xml and other.xml, so an unchanged package costs one stat and a
//! memcpy. An entry is reused only when the file's name, size, mtime (to the
//! nanosecond) and inode all still match; its sha256 is then trusted (that is
//! the point: not re-reading the file). A missing, stale, truncated or
//! unreadable cache only costs time, never correctness: the file ends with an
//! entry count and a trailer, and anything that does not parse exactly is
//! discarded as a whole.

use super::repodata;
use super::rpmmeta::PackageMeta;
use anyhow::Result;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Magic at the start; bump the digit when the layout or the renderers change.
const MAGIC: &[u8; 8] = b"KHFXC02\n";
const TRAILER: &[u8; 8] = b"KHFXEND\n";

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// One package as the metadata writer needs it: sort/retention keys and the
/// three rendered XML fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub stat: StatKey,
    pub name: String,
    pub arch: String,
    pub epoch: u32,
    pub version: String,
    pub release: String,
    /// Relative to the repository root, e.g. `Packages/foo-1-1.x86_64.rpm`.
    pub location: String,
    pub size_package: u64,
    pub primary: String,
    pub filelists: String,
    pub other: String,
}

impl Entry {
    /// Render the fragments of a freshly read package.
    pub fn from_meta(stat: StatKey, meta: &PackageMeta) -> Self {
        let mut primary = String::with_capacity(2048);
        repodata::primary_package(&mut primary, meta);
        let mut filelists = String::with_capacity(512);
        repodata::filelists_package(&mut filelists, meta);
        let mut other = String::with_capacity(512);
        repodata::other_package(&mut other, meta);
        Entry {
            stat,
            name: meta.name.clone(),
            arch: meta.arch.clone(),
            epoch: meta.epoch,
            version: meta.version.clone(),
            release: meta.release.clone(),
            location: meta.location.clone(),
            size_package: meta.size_package,
            primary,
            filelists,
            other,
        }
    }

    /// File name inside `Packages/`.
    pub fn file_name(&self) -> &str {
        self.location.trim_start_matches("Packages/")
    }
}

#[derive(Debug, Default)]
pub struct Cache {
    /// Keyed by file name inside `Packages/`.
    pub entries: HashMap<String, Entry>,
}

pub fn path(repo: &Path) -> PathBuf {
    repo.join(".khotfix-cache").join("packages.bin")
}

/// The JSON cache of earlier versions; removed when the new one is written.
fn legacy_path(repo: &Path) -> PathBuf {
    repo.join(".khotfix-cache").join("packages.json")
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Some(a)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<String> {
        let n = usize::try_from(self.u64()?).ok()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

fn encode(entries: &HashMap<String, Entry>) -> Vec<u8> {
    let total: usize = entries
        .values()
        .map(|e| 160 + e.primary.len() + e.filelists.len() + e.other.len())
        .sum();
    let mut out = Vec::with_capacity(total + 32);
    out.extend_from_slice(MAGIC);
    for (name, e) in entries {
        put_str(&mut out, name);
        put_u64(&mut out, e.stat.size);
        out.extend_from_slice(&e.stat.mtime_ns.to_le_bytes());
        put_u64(&mut out, e.stat.ino);
        put_str(&mut out, &e.name);
        put_str(&mut out, &e.arch);
        put_u64(&mut out, u64::from(e.epoch));
        put_str(&mut out, &e.version);
        put_str(&mut out, &e.release);
        put_str(&mut out, &e.location);
        put_u64(&mut out, e.size_package);
        put_str(&mut out, &e.primary);
        put_str(&mut out, &e.filelists);
        put_str(&mut out, &e.other);
    }
    put_u64(&mut out, entries.len() as u64);
    out.extend_from_slice(TRAILER);
    out
}

fn decode(bytes: &[u8]) -> Option<HashMap<String, Entry>> {
    let body = bytes.strip_prefix(MAGIC)?.strip_suffix(TRAILER)?;
    let (body, count) = body.split_at(body.len().checked_sub(8)?);
    let count = usize::try_from(u64::from_le_bytes(count.try_into().ok()?)).ok()?;
    let mut r = Reader { buf: body };
    let mut entries = HashMap::with_capacity(count.min(1 << 20));
    while !r.buf.is_empty() {
        let key = r.str()?;
        let size = r.u64()?;
        let mtime_ns = i128::from_le_bytes(r.take(16)?.try_into().ok()?);
        let ino = r.u64()?;
        let e = Entry {
            stat: StatKey {
                size,
                mtime_ns,
                ino,
            },
            name: r.str()?,
            arch: r.str()?,
            epoch: u32::try_from(r.u64()?).ok()?,
            version: r.str()?,
            release: r.str()?,
            location: r.str()?,
            size_package: r.u64()?,
            primary: r.str()?,
            filelists: r.str()?,
            other: r.str()?,
        };
        entries.insert(key, e);
    }
    (entries.len() == count).then_some(entries)
}

impl Cache {
    /// Load the cache; anything unreadable yields an empty cache.
    pub fn load(repo: &Path) -> Self {
        let entries = std::fs::read(path(repo))
            .ok()
            .and_then(|b| decode(&b))
            .unwrap_or_default();
        Cache { entries }
    }

    /// Take the cached entry for `name` if the file is unchanged.
    pub fn take(&mut self, name: &str, stat: &StatKey) -> Option<Entry> {
        match self.entries.get(name) {
            Some(e) if e.stat == *stat && e.size_package == stat.size => self.entries.remove(name),
            _ => None,
        }
    }

    /// Replace the cache file. Not fsynced: it is written after the commit,
    /// the rename makes it all-or-nothing against a killed process, and the
    /// trailer check turns a torn file after a power loss into an empty
    /// cache (a slower next publish, never wrong metadata).
    pub fn save(repo: &Path, entries: &HashMap<String, Entry>) -> Result<()> {
        use anyhow::Context;
        use std::io::Write;
        let p = path(repo);
        let dir = p.parent().unwrap_or(repo);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let bytes = encode(entries);
        let mut tmp = tempfile::Builder::new()
            .prefix(".khotfix-tmp-")
            .tempfile_in(dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        tmp.write_all(&bytes)
            .with_context(|| format!("writing {}", p.display()))?;
        tmp.persist(&p)
            .map_err(|e| e.error)
            .with_context(|| format!("renaming into {}", p.display()))?;
        let _ = std::fs::remove_file(legacy_path(repo));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: &str) -> Entry {
        Entry {
            stat: StatKey {
                size: 10,
                mtime_ns: -5,
                ino: 7,
            },
            name: n.into(),
            arch: "x86_64".into(),
            epoch: 1,
            version: "1.0".into(),
            release: "2".into(),
            location: format!("Packages/{n}-1.0-2.x86_64.rpm"),
            size_package: 10,
            primary: "<package>p</package>\n".into(),
            filelists: "<package>f</package>\n".into(),
            other: "<package>ö</package>\n".into(),
        }
    }

    #[test]
    fn round_trip_and_truncation() {
        let mut m = HashMap::new();
        m.insert("a.rpm".to_string(), entry("a"));
        m.insert("b.rpm".to_string(), entry("b"));
        let bytes = encode(&m);
        assert_eq!(decode(&bytes), Some(m));
        for cut in [0, 8, bytes.len() / 2, bytes.len() - 1] {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[9] ^= 0xff;
        assert_eq!(decode(&flipped), None);
    }
}
