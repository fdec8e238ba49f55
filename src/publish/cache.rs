//! Per-package metadata cache, so a publish neither reads nor re-renders
//! packages that are unchanged.
//!
//! Stored as one compact binary file, `DIR/.khotfix-cache/packages.bin`: a
//! magic line, then length-prefixed records. A publish that only adds
//! packages appends their records (cutting off any torn tail first); one
//! that removes packages, or finds the file mostly superseded records,
//! rewrites it atomically (temporary file + rename). Each entry holds the stat key, the
//! few fields ordering and retention need (name, EVR, arch, location), and
//! the package's already rendered `<package>` fragments of primary.xml,
//! filelists.xml and other.xml, so an unchanged package costs one stat and a
//! memcpy. An entry is reused only when the file's name, size, mtime (to the
//! nanosecond) and inode all still match; its sha256 is then trusted (that is
//! the point: not re-reading the file). A missing, stale, truncated or
//! unreadable cache only costs time, never correctness: a record that does
//! not parse exactly ends the file (a publish killed while appending leaves
//! at most a torn last record, which is ignored and cut off), a later record
//! for the same name supersedes an earlier one, and a bad magic discards the
//! whole file.

use super::repodata;
use super::rpmmeta::PackageMeta;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Entries by file name. FxHash, not SipHash: the keys are the repository's
/// own file names, and a publish hashes each of 10,000 of them several times.
pub type Entries = rustc_hash::FxHashMap<String, Entry>;

/// Magic at the start; bump the digit when the layout or the renderers change.
const MAGIC: &[u8; 8] = b"KHFXC04\n";

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatKey {
    pub size: u64,
    pub mtime_ns: i128,
    pub ino: u64,
}

impl StatKey {
    pub fn of_stat(st: &libc::stat) -> Self {
        StatKey {
            size: st.st_size as u64,
            mtime_ns: st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
            ino: st.st_ino,
        }
    }

    pub fn of(md: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        StatKey {
            size: md.len(),
            mtime_ns: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
            ino: md.ino(),
        }
    }
}

/// The bytes fragments point into: a freshly rendered buffer, or the cache
/// file mapped into memory (a 10,000-package cache is ~30 MB; reading it
/// would copy every byte once more than the data files need).
pub enum Backing {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for Backing {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Backing::Owned(v) => v,
            Backing::Mapped(m) => m,
        }
    }
}

/// A rendered XML fragment: its own buffer, or a slice of the loaded cache
/// file (so loading 10,000 entries does not copy or re-validate them).
#[derive(Clone)]
pub struct Frag {
    buf: Arc<Backing>,
    start: usize,
    end: usize,
}

impl Frag {
    pub fn owned(s: String) -> Self {
        let end = s.len();
        Frag {
            buf: Arc::new(Backing::Owned(s.into_bytes())),
            start: 0,
            end,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
}

impl PartialEq for Frag {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Frag {}

impl std::fmt::Debug for Frag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
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
    pub primary: Frag,
    pub filelists: Frag,
    pub other: Frag,
    /// sha256 over the three fragments (length-prefixed): what the gzip
    /// chunk cache keys on instead of hashing the XML again.
    pub digest: [u8; 32],
}

/// The [`Entry::digest`] of three fragments.
pub fn fragments_digest(fragments: [&[u8]; 3]) -> anyhow::Result<[u8; 32]> {
    use crate::util::libcrypto::{Digest, Hasher};
    let mut h = Hasher::new(Digest::Sha256)?;
    for f in fragments {
        h.update(&(f.len() as u64).to_le_bytes())?;
        h.update(f)?;
    }
    Ok(h.finish()?.try_into().expect("a sha256 is 32 bytes"))
}

impl Entry {
    /// Render the fragments of a freshly read package.
    pub fn from_meta(stat: StatKey, meta: &PackageMeta) -> anyhow::Result<Self> {
        let mut primary = String::with_capacity(2048);
        repodata::primary_package(&mut primary, meta);
        let mut filelists = String::with_capacity(512);
        repodata::filelists_package(&mut filelists, meta);
        let mut other = String::with_capacity(512);
        repodata::other_package(&mut other, meta);
        let digest =
            fragments_digest([primary.as_bytes(), filelists.as_bytes(), other.as_bytes()])?;
        Ok(Entry {
            stat,
            name: meta.name.clone(),
            arch: meta.arch.clone(),
            epoch: meta.epoch,
            version: meta.version.clone(),
            release: meta.release.clone(),
            location: meta.location.clone(),
            size_package: meta.size_package,
            primary: Frag::owned(primary),
            filelists: Frag::owned(filelists),
            other: Frag::owned(other),
            digest,
        })
    }

    /// File name inside `Packages/`.
    pub fn file_name(&self) -> &str {
        self.location.trim_start_matches("Packages/")
    }
}

#[derive(Debug, Default)]
pub struct Cache {
    /// Keyed by file name inside `Packages/`.
    pub entries: Entries,
    /// Records in the file (more than entries when some were superseded).
    records: usize,
    /// Length of the file's valid prefix (0: no usable file).
    valid_len: usize,
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
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u64(out, b.len() as u64);
    out.extend_from_slice(b);
}

struct Reader<'a> {
    buf: &'a [u8],
}

/// Reads fragments of the shared file buffer as [`Frag`]s.
struct FragReader<'a> {
    file: &'a Arc<Backing>,
    pos: usize,
    end: usize,
}

impl FragReader<'_> {
    fn take(&mut self, n: usize) -> Option<(usize, usize)> {
        let start = self.pos;
        let end = start.checked_add(n).filter(|&e| e <= self.end)?;
        self.pos = end;
        Some((start, end))
    }
    fn u64(&mut self) -> Option<u64> {
        let (a, b) = self.take(8)?;
        Some(u64::from_le_bytes(self.file[a..b].try_into().ok()?))
    }
    fn str(&mut self) -> Option<String> {
        let n = usize::try_from(self.u64()?).ok()?;
        let (a, b) = self.take(n)?;
        String::from_utf8(self.file[a..b].to_vec()).ok()
    }
    /// A fragment; checked to be UTF-8 like the String it was written from.
    fn frag(&mut self) -> Option<Frag> {
        let n = usize::try_from(self.u64()?).ok()?;
        let (start, end) = self.take(n)?;
        // simdutf8: std's check of the 30 MB of a 10,000-package cache
        // took a third of loading it.
        simdutf8::basic::from_utf8(&self.file[start..end]).ok()?;
        Some(Frag {
            buf: Arc::clone(self.file),
            start,
            end,
        })
    }
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
}

fn encode_record(out: &mut Vec<u8>, name: &str, e: &Entry) {
    let at = out.len();
    put_u64(out, 0); // length, patched below
    put_str(out, name);
    put_u64(out, e.stat.size);
    out.extend_from_slice(&e.stat.mtime_ns.to_le_bytes());
    put_u64(out, e.stat.ino);
    put_str(out, &e.name);
    put_str(out, &e.arch);
    put_u64(out, u64::from(e.epoch));
    put_str(out, &e.version);
    put_str(out, &e.release);
    put_str(out, &e.location);
    put_u64(out, e.size_package);
    put_bytes(out, e.primary.as_bytes());
    put_bytes(out, e.filelists.as_bytes());
    put_bytes(out, e.other.as_bytes());
    out.extend_from_slice(&e.digest);
    let len = (out.len() - at - 8) as u64;
    out[at..at + 8].copy_from_slice(&len.to_le_bytes());
}

fn decode_record(file: &Arc<Backing>, start: usize, end: usize) -> Option<(String, Entry)> {
    let mut r = FragReader {
        file,
        pos: start,
        end,
    };
    let key = r.str()?;
    let size = r.u64()?;
    let (a, b) = r.take(16)?;
    let mtime_ns = i128::from_le_bytes(file[a..b].try_into().ok()?);
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
        primary: r.frag()?,
        filelists: r.frag()?,
        other: r.frag()?,
        digest: {
            let (a, b) = r.take(32)?;
            file[a..b].try_into().ok()?
        },
    };
    (r.pos == end).then_some((key, e))
}

/// Write buffer of [`Cache::save`].
const BUFFER: usize = 256 * 1024;

#[cfg(test)]
fn encode<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a Entry)>,
    with_magic: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    write_records(&mut out, entries, with_magic).expect("writing to memory");
    out
}

/// Stream the records into `w` through one small buffer: building the whole
/// 6 MB file of 2,000 packages in memory first cost its page faults and
/// copies on every cold publish.
fn write_records<'a>(
    w: &mut impl std::io::Write,
    entries: impl IntoIterator<Item = (&'a str, &'a Entry)>,
    with_magic: bool,
) -> std::io::Result<()> {
    if with_magic {
        w.write_all(MAGIC)?;
    }
    let mut record = Vec::with_capacity(16 * 1024);
    for (name, e) in entries {
        record.clear();
        encode_record(&mut record, name, e);
        w.write_all(&record)?;
    }
    Ok(())
}

/// Parse the file: entries (later records win), the number of records, and
/// the length of the valid prefix.
fn decode(file: &Arc<Backing>) -> Option<(Entries, usize, usize)> {
    let bytes = &file[..];
    let mut rest = bytes.strip_prefix(MAGIC)?;
    // Sized up front (a record is ~2.5 KiB): rehashing 10,000 entries shows.
    let mut entries = Entries::with_capacity_and_hasher(bytes.len() / 2048, Default::default());
    let mut records = 0usize;
    loop {
        let valid = bytes.len() - rest.len();
        let mut r = Reader { buf: rest };
        let Some(rec) = r
            .u64()
            .and_then(|n| usize::try_from(n).ok())
            .and_then(|n| r.take(n))
        else {
            return Some((entries, records, valid));
        };
        let start = valid + 8;
        let Some((key, e)) = decode_record(file, start, start + rec.len()) else {
            return Some((entries, records, valid));
        };
        entries.insert(key, e);
        records += 1;
        rest = r.buf;
    }
}

/// Map the cache file read-only. Publishers hold the repository lock, and
/// the only writer truncates it to its valid prefix, which no fragment
/// reaches past.
fn map(p: &Path) -> Option<Backing> {
    let f = std::fs::File::open(p).ok()?;
    // SAFETY: the file is only changed under the publish lock we hold, and
    // then only appended to or cut back to the prefix already decoded.
    let m = unsafe { memmap2::MmapOptions::new().populate().map(&f) }.ok()?;
    Some(Backing::Mapped(m))
}

impl Cache {
    /// Load the cache; anything unreadable yields an empty cache.
    pub fn load(repo: &Path) -> Self {
        let file = map(&path(repo)).map(Arc::new);
        match file.as_ref().and_then(decode) {
            Some((entries, records, valid_len)) => Cache {
                entries,
                records,
                valid_len,
            },
            None => Cache::default(),
        }
    }

    /// Take the cached entry for `name` if the file is unchanged.
    pub fn take(&mut self, name: &str, stat: &StatKey) -> Option<Entry> {
        // One lookup for the common case (unchanged); a changed file's
        // entry is put back, for `save` to see that something changed.
        let (key, e) = self.entries.remove_entry(name)?;
        if e.stat == *stat && e.size_package == stat.size {
            Some(e)
        } else {
            self.entries.insert(key, e);
            None
        }
    }

    /// Bring the file up to date with `live` (every package now in the
    /// metadata, keyed by [`Entry::file_name`]), after the caller has
    /// [`take`](Self::take)n every reused entry (`cached` of them). Appends
    /// `fresh` (names just read) when that is all that changed; rewrites the
    /// file otherwise. Not fsynced: it runs beside the commit, and a lost or
    /// torn write only makes the next publish slower.
    pub fn save(self, repo: &Path, live: &[Entry], fresh: &[String], cached: usize) -> Result<()> {
        use anyhow::Context;
        use std::io::{Seek, Write};
        let p = path(repo);
        let dir = p.parent().unwrap_or(repo);
        let appendable = self.valid_len > 0
            && self.entries.is_empty() // nothing removed or changed
            && self.records <= 2 * live.len().max(1)
            && cached + fresh.len() == live.len(); // retention removed nothing
        if appendable {
            let fresh: std::collections::HashSet<&str> = fresh.iter().map(String::as_str).collect();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .with_context(|| format!("opening {}", p.display()))?;
            f.set_len(self.valid_len as u64)
                .with_context(|| format!("truncating {}", p.display()))?;
            f.seek(std::io::SeekFrom::Start(self.valid_len as u64))?;
            let records = live
                .iter()
                .map(|e| (e.file_name(), e))
                .filter(|(n, _)| fresh.contains(n));
            let mut w = std::io::BufWriter::with_capacity(BUFFER, f);
            write_records(&mut w, records, false)
                .and_then(|()| w.flush())
                .with_context(|| format!("appending to {}", p.display()))?;
            return Ok(());
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(".khotfix-tmp-")
            .tempfile_in(dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        let mut w = std::io::BufWriter::with_capacity(BUFFER, tmp);
        write_records(&mut w, live.iter().map(|e| (e.file_name(), e)), true)
            .with_context(|| format!("writing {}", p.display()))?;
        let tmp = w
            .into_inner()
            .map_err(|e| e.into_error())
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
    type HashMap<K, V> = rustc_hash::FxHashMap<K, V>;

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
            primary: Frag::owned("<package>p</package>\n".into()),
            filelists: Frag::owned("<package>f</package>\n".into()),
            other: Frag::owned("<package>ö</package>\n".into()),
            digest: [7; 32],
        }
    }

    #[test]
    fn round_trip_append_and_torn_tail() {
        let mut m = HashMap::default();
        m.insert("a.rpm".to_string(), entry("a"));
        m.insert("b.rpm".to_string(), entry("b"));
        let mut bytes = encode(m.iter().map(|(k, e)| (k.as_str(), e)), true);
        let (got, records, valid) = decode(&Arc::new(Backing::Owned(bytes.clone()))).unwrap();
        assert_eq!((got, records, valid), (m.clone(), 2, bytes.len()));
        // A torn appended record is ignored and marks where to cut.
        let whole = bytes.len();
        let mut c = entry("c");
        c.primary = Frag::owned("x".repeat(100));
        let mut extra = HashMap::default();
        extra.insert("c.rpm".to_string(), c.clone());
        let rec = encode(extra.iter().map(|(k, e)| (k.as_str(), e)), false);
        bytes.extend_from_slice(&rec[..rec.len() - 3]);
        let (got, records, valid) = decode(&Arc::new(Backing::Owned(bytes.clone()))).unwrap();
        assert_eq!((got, records, valid), (m.clone(), 2, whole));
        // A complete appended record supersedes nothing and adds one.
        bytes.truncate(whole);
        bytes.extend_from_slice(&rec);
        let (got, records, _) = decode(&Arc::new(Backing::Owned(bytes.clone()))).unwrap();
        assert_eq!(records, 3);
        assert_eq!(got.get("c.rpm"), Some(&c));
        // Wrong magic: nothing.
        assert!(decode(&Arc::new(Backing::Owned(bytes[1..].to_vec()))).is_none());
    }
}
