//! gzip data files assembled from cached, independently deflated chunks.
//!
//! Why: adding one package to a 10,000-package repository rewrites about
//! 26 MB of XML, and deflating all of it again at a level that gives files as
//! small as createrepo_c's costs more than the whole rest of a publish. Yet
//! the XML changed in one place, so the compressed file need only change in
//! one place too. The packages are cut into chunks at content-defined
//! boundaries (a package ends a chunk when its content digest says so,
//! one in [`CHUNK_ODDS`]), so adding or removing a package changes one chunk
//! and leaves the others byte-identical. Each chunk is deflated on its own,
//! primed with the previous chunk's last 32 KiB as preset dictionary (as pigz
//! does, so almost nothing is lost to the cuts), ends on a sync flush, and is
//! cached under the sha256 of (level, dictionary, chunk). A chunk's bytes thus
//! depend only on its key, and the file is the same whether a chunk came from
//! the cache or was just deflated.
//!
//! The file is one ordinary gzip member: a header, the chunks' deflate
//! blocks (the last chunk's end in a final block), the CRC-32 and the size.
//! A file of one chunk is one plain deflate stream, header included. Every
//! gzip reader takes it (EL7's yum included).
//!
//! The deflater is zlib, the C library createrepo_c uses, built from source
//! (`libz-sys` with `static`): level 9's lazy matching with a shorter match
//! search per file ([`tuning`], through [`crate::util::zlib`]). On the XML
//! of 10,000 generated packages (`benches/publish.sh`), one stream each,
//! size against createrepo_c's file (zlib level 6) and single-thread time
//! (a C harness over zlib 1.2.13, best of 3):
//!
//! | zlib setting | primary (18 MB) | filelists (4 MB) | other (4 MB) |
//! |---|---|---|---|
//! | level 6 | 1.000, 71 ms | 1.000, 26 ms | 1.000, 27 ms |
//! | level 8 | 0.988, 127 ms | 0.993, 49 ms | 0.996, 51 ms |
//! | level 9 | 0.987, 152 ms | 0.993, 51 ms | 0.996, 47 ms |
//! | level 9, chain 128 | 0.990, 81 ms | 0.993, 30 ms | 0.997, 33 ms |
//! | level 9, chain 32 | 1.019, 62 ms | 0.994, 25 ms | 0.997, 24 ms |
//!
//! Level 7 (chain 256, but nice length 128) already makes primary larger
//! than level 6 does; zlib-rs at level 9 did not come out smaller than
//! createrepo_c's either (issue 17's closing note).
//!
//! The chunk cache is `.khotfix-cache/deflate.bin`, rewritten after each
//! publish with the chunks the new generation uses. Each record carries the
//! sha256 of its deflated bytes; a record that does not check out discards
//! the whole file, which only costs time.

use crate::util::zlib::{End, RawDeflate, Tuning};
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The match search for a data file's chunks (see the table above):
/// level 9's lazy matching, trying at most 128 earlier positions in
/// primary, whose long repetitive package entries gain from the search, and
/// 32 in the others, which do not.
pub fn tuning(kind: &str) -> Tuning {
    let chain = if kind == "primary" { 128 } else { 32 };
    Tuning {
        good: 32,
        lazy: 258,
        nice: 258,
        chain,
    }
}
/// One package in this many ends a chunk (on average).
pub const CHUNK_ODDS: u64 = 256;
/// deflate's window: the preset dictionary of a chunk.
const WINDOW: usize = 32 * 1024;
/// gzip header: no name, mtime 0, "maximum compression", Unix.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3];
const MAGIC: &[u8; 8] = b"KHFXZ01\n";

pub type Key = [u8; 32];

/// Where chunks end: `ends[i]` is one past the last package of chunk `i`
/// (empty when there are no packages). A package ends a chunk when its
/// content digest (a sha256, so uniformly spread) says so: each package
/// decides for itself, so an insertion or removal moves no other boundary,
/// and nothing is hashed again (hashing 10,000 locations cost 3 ms a
/// publish). A package whose content changes may move its own boundary,
/// which changes the one or two chunks it is in anyway.
pub fn chunk_ends(digests: &[Key]) -> Vec<usize> {
    let mut ends = Vec::new();
    for (i, d) in digests.iter().enumerate() {
        let v = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
        if v % CHUNK_ODDS == 0 {
            ends.push(i + 1);
        }
    }
    let n = digests.len();
    if ends.last() != Some(&n) && n > 0 {
        ends.push(n);
    }
    ends
}

/// One data file to write: its header (own segment: it holds the package
/// count), the packages' fragments, and its footer (joined to the last chunk).
pub struct DataFile<'a> {
    pub kind: &'a str,
    pub header: &'a [u8],
    pub fragments: Vec<&'a [u8]>,
    pub footer: &'a [u8],
}

/// A run of consecutive bytes of the file, deflated as one piece.
struct Segment<'a> {
    parts: Vec<&'a [u8]>,
    /// The pieces of the previous segment's last [`WINDOW`] bytes (copied
    /// into one dictionary only when this segment is deflated).
    dictionary: Vec<&'a [u8]>,
    key: Key,
    /// Ends the deflate stream (a final block) instead of a sync flush.
    last: bool,
    tuning: Tuning,
}

/// The cache key of a segment: what its deflated bytes depend on. For a
/// chunk that is the packages' content digests (each covers all of its
/// rendered fragments) and those of the previous chunk, whose tail is the
/// dictionary; hashing 32-byte digests instead of the XML keeps a publish
/// from reading 26 MB twice.
fn segment_key(kind: &str, what: &str, bytes: &[&[u8]], digests: &[&[Key]]) -> Key {
    let mut h = Sha256::new();
    h.update(tuning(kind).key_bytes());
    for b in [kind.as_bytes(), what.as_bytes()].iter().chain(bytes) {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    }
    for d in digests {
        h.update((d.len() as u64).to_le_bytes());
        for k in d.iter() {
            h.update(k);
        }
    }
    h.finalize().into()
}

impl<'a> Segment<'a> {
    /// The pieces of the last [`WINDOW`] bytes: the next segment's
    /// dictionary.
    fn tail(&self) -> Vec<&'a [u8]> {
        let mut want = WINDOW;
        let mut pieces = Vec::new();
        for p in self.parts.iter().rev() {
            if want == 0 {
                break;
            }
            let take = want.min(p.len());
            pieces.push(&p[p.len() - take..]);
            want -= take;
        }
        pieces.reverse();
        pieces
    }

    fn deflate(&self) -> Result<Vec<u8>> {
        let mut z = RawDeflate::new(self.tuning)?;
        if !self.dictionary.is_empty() {
            z.set_dictionary(&self.dictionary.concat())
                .context("priming deflate with the previous chunk")?;
        }
        let size: usize = self.parts.iter().map(|p| p.len()).sum();
        let mut out = Vec::with_capacity(size / 8 + 1024);
        for p in &self.parts {
            z.write(p, &mut out).context("deflating a chunk")?;
        }
        let end = if self.last { End::Final } else { End::Sync };
        z.finish(end, &mut out).context("deflating a chunk")?;
        Ok(out)
    }
}

fn segments<'a>(f: &DataFile<'a>, ends: &[usize], digests: &[Key]) -> Vec<Segment<'a>> {
    if ends.len() <= 1 {
        // One chunk: one plain deflate stream, header included, as small as
        // a gzip of the whole file can be (small repositories are cheap to
        // deflate again).
        let mut parts = vec![f.header];
        parts.extend(&f.fragments);
        parts.push(f.footer);
        let key = segment_key(f.kind, "whole", &[f.header, f.footer], &[digests]);
        return vec![Segment {
            parts,
            dictionary: Vec::new(),
            key,
            last: true,
            tuning: tuning(f.kind),
        }];
    }
    let mut segs = vec![Segment {
        parts: vec![f.header],
        dictionary: Vec::new(),
        key: segment_key(f.kind, "header", &[f.header], &[]),
        last: false,
        tuning: tuning(f.kind),
    }];
    let mut start = 0;
    let mut previous: &[Key] = &[];
    for (i, &end) in ends.iter().enumerate() {
        let mut parts: Vec<&[u8]> = f.fragments[start..end].to_vec();
        let last = i + 1 == ends.len();
        if last {
            parts.push(f.footer);
        }
        // The first chunk is not primed with the header: the header changes
        // with every package count, and the chunk should not.
        let dictionary = if i == 0 {
            Vec::new()
        } else {
            segs.last().map(Segment::tail).unwrap_or_default()
        };
        let footer: &[&[u8]] = if last { &[f.footer] } else { &[] };
        let own = &digests[start..end];
        let key = segment_key(f.kind, "chunk", footer, &[previous, own]);
        segs.push(Segment {
            parts,
            dictionary,
            key,
            last,
            tuning: tuning(f.kind),
        });
        previous = own;
        start = end;
    }
    segs
}

/// What one file's hashing pass found.
struct Hashed {
    open_sha256: String,
    open_size: u64,
    crc: u32,
}

/// Hash the whole uncompressed file: `open-checksum` needs its sha256 and
/// the gzip trailer its CRC-32, so every byte of the 26 MB of a
/// 10,000-package repository goes through here on every publish. The
/// sha256 is libcrypto's: this loop was the largest single cost of adding
/// one package, and libcrypto hashes 1.6 times as fast as the `sha2` crate.
fn hash(segments: &[Segment]) -> Result<Hashed> {
    use crate::util::libcrypto::{Digest as Kind, Hasher};
    let mut open = Hasher::new(Kind::Sha256)?;
    let mut crc = crc32fast::Hasher::new();
    let mut open_size = 0u64;
    for p in segments.iter().flat_map(|s| &s.parts) {
        open.update(p)?;
        crc.update(p);
        open_size += p.len() as u64;
    }
    Ok(Hashed {
        open_sha256: hex::encode(open.finish()?),
        open_size,
        crc: crc.finalize(),
    })
}

/// A written data file, before it gets its content-addressed name.
pub struct Written {
    pub kind: String,
    pub open_sha256: String,
    pub open_size: u64,
}

/// Deflated chunks by key: the ones loaded from the cache file, plus the
/// ones this publish deflated.
#[derive(Default)]
pub struct ChunkCache {
    chunks: HashMap<Key, Vec<u8>>,
    /// Keys of the generation just written, in order (what [`save`] keeps).
    used: Vec<Key>,
    /// Chunks this publish had to deflate (for tests and phase output).
    pub deflated: usize,
}

pub fn cache_path(repo: &Path) -> PathBuf {
    repo.join(".khotfix-cache").join("deflate.bin")
}

impl ChunkCache {
    /// Load `.khotfix-cache/deflate.bin`; anything that does not check out
    /// yields an empty cache.
    pub fn load(repo: &Path) -> Self {
        let chunks = std::fs::read(cache_path(repo))
            .ok()
            .and_then(|b| decode(&b))
            .unwrap_or_default();
        ChunkCache {
            chunks,
            ..Default::default()
        }
    }

    /// Rewrite the cache file with the chunks of the last [`write_files`]
    /// call (temporary file + rename; not fsynced: losing it costs time only).
    pub fn save(&self, repo: &Path) -> Result<()> {
        let p = cache_path(repo);
        let dir = p.parent().unwrap_or(repo);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut out = Vec::from(&MAGIC[..]);
        let mut seen = std::collections::HashSet::new();
        for key in self.used.iter().filter(|k| seen.insert(**k)) {
            let Some(bytes) = self.chunks.get(key) else {
                continue;
            };
            out.extend_from_slice(key);
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(&crate::util::libcrypto::sha256(bytes)?);
            out.extend_from_slice(bytes);
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(".khotfix-tmp-")
            .tempfile_in(dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        tmp.write_all(&out)
            .with_context(|| format!("writing {}", p.display()))?;
        tmp.persist(&p)
            .map_err(|e| e.error)
            .with_context(|| format!("renaming into {}", p.display()))?;
        Ok(())
    }
}

fn decode(b: &[u8]) -> Option<HashMap<Key, Vec<u8>>> {
    let mut rest = b.strip_prefix(MAGIC)?;
    let mut chunks = HashMap::new();
    while !rest.is_empty() {
        let (key, r) = rest.split_first_chunk::<32>()?;
        let (len, r) = r.split_first_chunk::<8>()?;
        let (sum, r) = r.split_first_chunk::<32>()?;
        let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
        if r.len() < len {
            return None;
        }
        let (bytes, r) = r.split_at(len);
        if crate::util::libcrypto::sha256(bytes).ok()? != *sum {
            return None;
        }
        chunks.insert(*key, bytes.to_vec());
        rest = r;
    }
    Some(chunks)
}

/// Write every file of `files` as gzip into the matching writer of `sinks`,
/// reusing cached chunks and deflating the others on every core. Every file
/// has one fragment per package; `digests` holds each package's content
/// digest (over all its fragments), `ends` the chunk ends of [`chunk_ends`].
pub fn write_files(
    cache: &mut ChunkCache,
    files: &[DataFile<'_>],
    digests: &[Key],
    ends: &[usize],
    sinks: Vec<&mut dyn Write>,
) -> Result<Vec<Written>> {
    let segs: Vec<Vec<Segment>> = files.iter().map(|f| segments(f, ends, digests)).collect();
    let mut missing: Vec<(&Segment, Key)> = Vec::new();
    let mut queued = std::collections::HashSet::new();
    for seg in segs.iter().flatten() {
        if !cache.chunks.contains_key(&seg.key) && queued.insert(seg.key) {
            missing.push((seg, seg.key));
        }
    }
    // Hash every file while the changed chunks are deflated.
    let (hashed, deflated) = std::thread::scope(|s| {
        let handles: Vec<_> = segs.iter().map(|sg| s.spawn(move || hash(sg))).collect();
        let deflated = deflate_all(&missing);
        let hashed = handles
            .into_iter()
            .map(|h| h.join().expect("hashing thread panicked"))
            .collect::<Result<Vec<_>>>();
        (hashed, deflated)
    });
    let (hashed, deflated) = (hashed?, deflated?);
    cache.deflated = missing.len();
    for (key, bytes) in deflated {
        cache.chunks.insert(key, bytes);
    }
    cache.used = segs.iter().flatten().map(|s| s.key).collect();
    let mut written = Vec::with_capacity(files.len());
    for (((f, sg), sc), sink) in files.iter().zip(&segs).zip(&hashed).zip(sinks) {
        sink.write_all(&GZIP_HEADER)?;
        for seg in sg {
            sink.write_all(&cache.chunks[&seg.key])?;
        }
        sink.write_all(&sc.crc.to_le_bytes())?;
        sink.write_all(&(sc.open_size as u32).to_le_bytes())?;
        written.push(Written {
            kind: f.kind.to_string(),
            open_sha256: sc.open_sha256.clone(),
            open_size: sc.open_size,
        });
    }
    Ok(written)
}

/// Deflate `jobs` on every core (largest first, so no core idles at the end).
fn deflate_all(jobs: &[(&Segment, Key)]) -> Result<Vec<(Key, Vec<u8>)>> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    let size = |i: &usize| -> usize { jobs[*i].0.parts.iter().map(|p| p.len()).sum() };
    order.sort_by_key(|i| std::cmp::Reverse(size(i)));
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(jobs.len().max(1));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<Vec<(Key, Vec<u8>)>> {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&j) = order.get(i) else {
                            return Ok(done);
                        };
                        let (seg, key) = &jobs[j];
                        done.push((*key, seg.deflate()?));
                    }
                })
            })
            .collect();
        let mut all = Vec::with_capacity(jobs.len());
        for h in handles {
            all.extend(h.join().expect("deflate thread panicked")?);
        }
        Ok(all)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn package(i: usize) -> String {
        format!(
            "<package type=\"rpm\"><name>p{i}</name><location href=\"Packages/p{i}-1-1.x86_64.rpm\"/>{}</package>\n",
            "<file>/usr/lib/x</file>".repeat(i % 7)
        )
    }

    fn gzip(cache: &mut ChunkCache, pkgs: &[String]) -> Vec<u8> {
        let header = format!("<metadata packages=\"{}\">\n", pkgs.len());
        let f = DataFile {
            kind: "primary",
            header: header.as_bytes(),
            fragments: pkgs.iter().map(|p| p.as_bytes()).collect(),
            footer: b"</metadata>\n",
        };
        let digests: Vec<Key> = pkgs.iter().map(|p| Sha256::digest(p).into()).collect();
        let ends = chunk_ends(&digests);
        let mut out = Vec::new();
        write_files(cache, &[f], &digests, &ends, vec![&mut out]).unwrap();
        out
    }

    fn gunzip(b: &[u8]) -> String {
        // A single member: the plain (not multi-member) decoder reads it all.
        let mut s = String::new();
        flate2::read::GzDecoder::new(b)
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    #[test]
    fn one_gzip_member_with_the_exact_xml_and_same_bytes_warm_or_cold() {
        let pkgs: Vec<String> = (0..3000).map(package).collect();
        let mut cold = ChunkCache::default();
        let a = gzip(&mut cold, &pkgs);
        let xml = format!(
            "<metadata packages=\"3000\">\n{}</metadata>\n",
            pkgs.concat()
        );
        assert_eq!(gunzip(&a), xml);
        assert!(
            cold.deflated > 5,
            "expected several chunks, got {}",
            cold.deflated
        );
        // GNU gzip has its own inflate: it must read the chunked stream too.
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("primary.xml.gz");
        std::fs::write(&f, &a).unwrap();
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, xml.as_bytes());
        let mut warm = ChunkCache {
            chunks: cold.chunks.clone(),
            ..Default::default()
        };
        assert_eq!(gzip(&mut warm, &pkgs), a, "cached chunks changed the bytes");
        assert_eq!(warm.deflated, 0, "every chunk, header included, was cached");
    }

    #[test]
    fn adding_one_package_deflates_few_chunks() {
        let mut pkgs: Vec<String> = (0..3000).map(package).collect();
        let mut cache = ChunkCache::default();
        gzip(&mut cache, &pkgs);
        pkgs.insert(1234, package(99_999));
        let out = gzip(&mut cache, &pkgs);
        // The header, the chunk that got the package, and at most the next
        // one (when the package landed in its dictionary window).
        assert!(cache.deflated <= 3, "deflated {} chunks", cache.deflated);
        assert!(gunzip(&out).contains("<name>p99999</name>"));
        let mut cold = ChunkCache::default();
        assert_eq!(gzip(&mut cold, &pkgs), out);
    }

    #[test]
    fn no_larger_than_zlib_level_6_in_one_stream() {
        // createrepo_c writes its files with zlib at level 6.
        for n in [1, 40, 3000] {
            let pkgs: Vec<String> = (0..n).map(package).collect();
            let ours = gzip(&mut ChunkCache::default(), &pkgs);
            let xml = gunzip(&ours);
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            enc.write_all(xml.as_bytes()).unwrap();
            let theirs = enc.finish().unwrap();
            assert!(
                ours.len() <= theirs.len(),
                "{n} packages: {} > {} bytes",
                ours.len(),
                theirs.len()
            );
        }
    }

    #[test]
    fn empty_and_tiny_files() {
        for n in [0, 1, 2] {
            let pkgs: Vec<String> = (0..n).map(package).collect();
            let out = gzip(&mut ChunkCache::default(), &pkgs);
            assert!(gunzip(&out).ends_with("</metadata>\n"));
        }
    }

    #[test]
    fn cache_file_round_trip_and_corruption_discards_it() {
        let d = tempfile::tempdir().unwrap();
        let pkgs: Vec<String> = (0..2000).map(package).collect();
        let mut cache = ChunkCache::default();
        let a = gzip(&mut cache, &pkgs);
        cache.save(d.path()).unwrap();
        let mut loaded = ChunkCache::load(d.path());
        assert_eq!(gzip(&mut loaded, &pkgs), a);
        assert_eq!(loaded.deflated, 0);
        let p = cache_path(d.path());
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&p, &bytes).unwrap();
        let mut bad = ChunkCache::load(d.path());
        assert!(bad.chunks.is_empty());
        assert_eq!(gzip(&mut bad, &pkgs), a);
    }
}
