//! Stage: publish. Maintains a yum repository of hotfix RPMs with signed,
//! atomically swapped, incrementally generated metadata.
//!
//! A repository `DIR` has one part per distro release (`DIR/<rpm_dist>/`)
//! plus the top level for packages without a known dist tag ([`layout`]).
//! Layout of one part `P` (`DIR` itself or `DIR/<rpm_dist>`):
//!
//! ```text
//! P/Packages/*.rpm               the packages
//! P/repodata -> .repodata-<id>   symlink to the current metadata generation
//! P/.repodata-<id>/              repomd.xml, repomd.xml.asc and
//!                                <sha256>-{primary,filelists,other}.xml.gz
//! P/khotfix.repo                 a ready client .repo file
//! P/.khotfix-cache/              per-package metadata cache (packages.bin) and
//!                                deflated gzip chunks (deflate.bin, [`gzchunks`])
//! DIR/RPM-GPG-KEY-khotfix        the public key of every part
//! DIR/khotfix-release-latest-<rpm_dist>.noarch.rpm   [`release`]
//! DIR/.khotfix.lock              flock serialising publishers (whole repo)
//! ```
//!
//! Package file names are `name-version-release.arch.rpm`, with the epoch
//! (`name-E_version-release.arch.rpm`) when it is not 0. A name already
//! taken by other content gets a content suffix (`….<sha256 prefix>.rpm`),
//! so no publish ever overwrites a file the current metadata points at: a
//! `--replace` writes the new bytes under a new name, swaps the metadata,
//! and only then removes the old file, exactly like an addition. A crash in
//! between leaves an unreferenced duplicate that the next publish drops in
//! favour of the one the current metadata names.
//!
//! Atomicity: a generation directory is written completely (and fsynced)
//! under a temporary name, then the `repodata` symlink is replaced with one
//! `rename(2)`. repomd.xml, its signature and the data files therefore change
//! together: a crash at any point leaves the old or the new generation
//! visible, never a mix. The previous generation is kept until the next
//! publish so a client that fetched the old repomd.xml a moment ago can still
//! fetch the data files it names.

pub mod cache;
pub mod guard;
pub mod gzchunks;
pub mod layout;
pub mod lock;
pub mod release;
pub mod repodata;
pub mod repomd;
pub mod rpmcheck;
pub mod rpmmeta;
pub mod verify;

use anyhow::{anyhow, bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub use layout::{publish, publish_checked, PartReport, PublishReport};
pub use repomd::{Compression, DataRecord};
pub use rpmmeta::PackageMeta;
pub use verify::{verify_repo, RepoVerifyReport};

/// Name of the public key file in the repository root.
pub const KEY_FILE: &str = "RPM-GPG-KEY-khotfix";
/// Name of the client .repo file in the repository root.
pub const REPO_FILE: &str = "khotfix.repo";
/// Placeholder base URL written when `--base-url` is not given.
pub const BASEURL_PLACEHOLDER: &str = "https://hotfix-repo.invalid/khotfix";

/// What to publish and how.
pub struct PublishOptions {
    pub repo: PathBuf,
    pub rpms: Vec<PathBuf>,
    /// Keep the N newest releases (EVR order) of each package name.
    pub keep: Option<usize>,
    /// Signs repomd.xml (and the khotfix-release RPMs); its public half is
    /// the repository key.
    pub key: crate::keys::PackageSigner,
    pub compress: Compression,
    /// Written into khotfix.repo as baseurl (a placeholder when None).
    pub base_url: Option<String>,
    /// Where the progress of long header reads goes.
    pub reporter: crate::progress::SharedReporter,
}

/// The integrity choices of a publish (issue 16); the default refuses
/// everything doubtful.
#[derive(Default)]
pub struct Safety {
    /// Replace a package whose name-epoch-version-release-arch is already in
    /// the repository with different content (refused otherwise).
    pub replace: bool,
    /// Sign unsigned inputs with this (the repository) key instead of
    /// refusing them.
    pub signer: Option<crate::keys::PackageSigner>,
}

/// What the publish of one part did.
struct PartOutcome {
    revision: u64,
    /// File names under Packages/ that this publish added or replaced.
    added: Vec<String>,
    /// File names removed by retention.
    removed: Vec<String>,
    packages: usize,
    cached: usize,
    read: usize,
    metadata: Vec<DataRecord>,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// An input package, checked before the repository is touched.
struct Incoming {
    /// What to copy in (the input, or its signed copy with `--sign`).
    src: PathBuf,
    /// The input as the user named it (for messages).
    shown: PathBuf,
    /// `name-[epoch:]version-release.arch`.
    nevra: String,
    /// The canonical file name (see the module docs).
    file_name: String,
    sha256: String,
}

/// The canonical file name of a package: the epoch is part of it when it is
/// not 0, so packages differing only in epoch never share a name.
pub fn canonical_file_name(meta: &PackageMeta) -> String {
    if meta.epoch == 0 {
        meta.file_name()
    } else {
        format!(
            "{}-{}_{}-{}.{}.rpm",
            meta.name, meta.epoch, meta.version, meta.release, meta.arch
        )
    }
}

fn check_input(path: &Path) -> Result<(String, String)> {
    rpmcheck::check_file(path)
        .map_err(|e| anyhow!("{}: not a readable RPM: {e}", path.display()))?;
    let md = rpm::PackageMetadata::open(path)
        .map_err(|e| anyhow!("{}: not a readable RPM: {e}", path.display()))?;
    let facts = rpmmeta::FileFacts {
        checksum: "",
        size: 0,
        mtime: 0,
        location: "",
    };
    let meta = rpmmeta::from_metadata(&md, &facts).with_context(|| path.display().to_string())?;
    let file_name = canonical_file_name(&meta);
    guard::check_file_name(&file_name)
        .map_err(|e| anyhow!("{}: cannot be stored as {file_name:?}: {e}", path.display()))?;
    Ok((meta.nevra(), file_name))
}

/// Read, name and signature-check every input; nothing is written to the
/// repository (signed copies go to `scratch`).
fn check_inputs(opts: &PublishOptions, safety: &Safety, scratch: &Path) -> Result<Vec<Incoming>> {
    let named = opts
        .rpms
        .iter()
        .map(|p| check_input(p))
        .collect::<Result<Vec<_>>>()?;
    let public = opts.key.public_armored();
    let srcs = guard::gate_signatures(&opts.rpms, public, safety.signer.as_ref(), scratch)?;
    let mut out: Vec<Incoming> = Vec::with_capacity(srcs.len());
    for ((shown, (nevra, file_name)), src) in opts.rpms.iter().zip(named).zip(srcs) {
        let sha256 = crate::util::fsx::sha256_file(&src)?;
        if let Some(other) = out.iter().find(|o| o.nevra == nevra) {
            if other.sha256 == sha256 {
                continue;
            }
            bail!(
                "{}: {nevra} is also given as {} with different content",
                shown.display(),
                other.shown.display()
            );
        }
        out.push(Incoming {
            src,
            shown: shown.clone(),
            nevra,
            file_name,
            sha256,
        });
    }
    Ok(out)
}

/// Copy `src` to `dir/name` atomically (temporary file, fsync, rename) and
/// return its sha256. Skips the copy when an identical file is already there.
fn copy_in(src: &Path, dir: &Path, name: &str) -> Result<(String, bool)> {
    let dest = dir.join(name);
    let src_sum = crate::util::fsx::sha256_file(src)?;
    if dest.is_file() {
        if let Ok(existing) = crate::util::fsx::sha256_file(&dest) {
            if existing == src_sum {
                return Ok((src_sum, false));
            }
        }
    }
    let mut input =
        std::fs::File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(TMP_PREFIX)
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let mut hasher = sha2::Sha256::default();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = input
            .read(&mut buf)
            .with_context(|| format!("reading {}", src.display()))?;
        if n == 0 {
            break;
        }
        sha2::Digest::update(&mut hasher, &buf[..n]);
        tmp.write_all(&buf[..n])
            .with_context(|| format!("writing into {}", dir.display()))?;
    }
    let copied = hex::encode(sha2::Digest::finalize(hasher));
    if copied != src_sum {
        bail!("{}: changed while it was being copied", src.display());
    }
    make_public(tmp.as_file())?;
    tmp.as_file().sync_all()?;
    // Never over a file: the current metadata may point at it.
    tmp.persist_noclobber(&dest)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming into {}", dest.display()))?;
    Ok((copied, true))
}

/// Read header + checksum of every package in `todo`, on all cores. The
/// threads take the next file as they get free (sizes vary, and one
/// thread's share finishing late was the wall time).
fn read_many(
    pkgdir: &Path,
    todo: Vec<(String, libc::stat)>,
    reporter: &dyn crate::progress::Reporter,
    skipped: &mut Vec<String>,
) -> Result<Vec<cache::Entry>> {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
    if todo.is_empty() {
        return Ok(Vec::new());
    }
    let dir =
        std::fs::File::open(pkgdir).with_context(|| format!("opening {}", pkgdir.display()))?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
        .min(todo.len());
    // Progress only for long reads.
    let total = todo.len() as u64;
    let bar: Box<dyn crate::progress::Reporter> = if todo.len() >= 200 {
        reporter.child("reading RPM headers", Some(total))
    } else {
        Box::new(crate::progress::Quiet)
    };
    let (next, done) = (AtomicUsize::new(0), AtomicU64::new(0));
    let mut results: Vec<(usize, Result<cache::Entry>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (bar, next, done, dir, todo) = (bar.as_ref(), &next, &done, &dir, &todo);
                s.spawn(move || {
                    let mut buf = Vec::new();
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Relaxed);
                        let Some((name, st)) = todo.get(i) else {
                            return out;
                        };
                        out.push((i, read_one(dir, pkgdir, name, st, &mut buf)));
                        bar.progress(done.fetch_add(1, Relaxed) + 1, Some(total));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    bar.finish(true, "");
    if results.len() != todo.len() {
        bail!("a reader thread panicked");
    }
    // In listing order, whichever thread read what.
    results.sort_unstable_by_key(|(i, _)| *i);
    let mut out = Vec::with_capacity(results.len());
    for (_, one) in results {
        // One unreadable file must not stop every later publish.
        match one {
            Ok(e) => out.push(e),
            Err(e) => skipped.push(format!("{e:#}")),
        }
    }
    Ok(out)
}

/// One warning line for a file of `Packages/` left out of the metadata.
fn warn_skip(why: &str) {
    eprintln!(
        "khotfix: warning: skipped (not in the metadata): {}",
        crate::repodata::one_line(why)
    );
}

/// Read one package of `dir` (the open `pkgdir`) into `buf`, hash it and
/// render its metadata.
fn read_one(
    dir: &std::fs::File,
    pkgdir: &Path,
    name: &str,
    st: &libc::stat,
    buf: &mut Vec<u8>,
) -> Result<cache::Entry> {
    let path = || pkgdir.join(name).display().to_string();
    // One open: hash the whole file, then parse the header from the start.
    crate::util::fsx::read_at(dir, name, buf).with_context(|| format!("reading {}", path()))?;
    let bytes = &buf[..];
    let checksum = hex::encode(crate::util::libcrypto::sha256(bytes)?);
    rpmcheck::check_structure(&mut std::io::Cursor::new(bytes))
        .map_err(|e| anyhow!("{}: not a readable RPM: {e}", path()))?;
    let parsed = rpm::PackageMetadata::parse(&mut std::io::Cursor::new(bytes))
        .map_err(|e| anyhow!("{}: not a readable RPM: {e}", path()))?;
    let location = format!("Packages/{name}");
    let facts = rpmmeta::FileFacts {
        checksum: &checksum,
        size: bytes.len() as u64,
        mtime: st.st_mtime.max(0) as u64,
        location: &location,
    };
    let meta = rpmmeta::from_metadata(&parsed, &facts).with_context(path)?;
    // Render here, on the reader threads; the cache keeps the fragments.
    cache::Entry::from_meta(cache::StatKey::of_stat(st), &meta)
}

/// rpm EVR order.
pub fn evr_cmp(a: &PackageMeta, b: &PackageMeta) -> std::cmp::Ordering {
    evr_cmp_parts(
        (a.epoch, &a.version, &a.release),
        (b.epoch, &b.version, &b.release),
    )
}

fn evr_cmp_parts(a: (u32, &str, &str), b: (u32, &str, &str)) -> std::cmp::Ordering {
    use crate::kernel::rpmvercmp;
    a.0.cmp(&b.0)
        .then_with(|| rpmvercmp(a.1, b.1))
        .then_with(|| rpmvercmp(a.2, b.2))
}

fn entry_evr_cmp(a: &cache::Entry, b: &cache::Entry) -> std::cmp::Ordering {
    evr_cmp_parts(
        (a.epoch, &a.version, &a.release),
        (b.epoch, &b.version, &b.release),
    )
}

/// Split `pkgs` into (kept, removed): for each name, the packages whose EVR
/// is among the `keep` newest distinct EVRs of that name.
pub fn apply_retention(
    pkgs: Vec<PackageMeta>,
    keep: usize,
) -> (Vec<PackageMeta>, Vec<PackageMeta>) {
    retention(pkgs, keep, |p| p.name.as_str(), evr_cmp)
}

/// [`apply_retention`] for any record with a name and an EVR order.
fn retention<T>(
    pkgs: Vec<T>,
    keep: usize,
    name: impl Fn(&T) -> &str,
    cmp: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> (Vec<T>, Vec<T>) {
    let mut by_name: BTreeMap<String, Vec<T>> = BTreeMap::new();
    for p in pkgs {
        by_name.entry(name(&p).to_string()).or_default().push(p);
    }
    let (mut kept, mut removed) = (Vec::new(), Vec::new());
    for (_, mut group) in by_name {
        group.sort_by(|a, b| cmp(b, a));
        let mut distinct = 0usize;
        let mut keep_flags = Vec::with_capacity(group.len());
        for i in 0..group.len() {
            if i == 0 || cmp(&group[i - 1], &group[i]) != std::cmp::Ordering::Equal {
                distinct += 1;
            }
            keep_flags.push(distinct <= keep);
        }
        for (p, k) in group.into_iter().zip(keep_flags) {
            if k {
                kept.push(p);
            } else {
                removed.push(p);
            }
        }
    }
    (kept, removed)
}

/// Check a `--base-url` value before it goes into a .repo file.
pub fn check_base_url(url: &str) -> Result<()> {
    if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with("file:///")) {
        bail!("--base-url {url:?} must start with http://, https:// or file:///");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("--base-url {url:?} contains whitespace or control characters");
    }
    Ok(())
}

/// The client .repo file of the top level (see [`layout::served_repo_file`]).
pub fn repo_file(base_url: Option<&str>) -> String {
    layout::served_repo_file(&layout::Part { dist: None }, base_url)
}

/// The scan of `Packages/`: metadata of every usable package, by file name.
struct Scan {
    entries: cache::Entries,
    /// Every file name present (usable or not): names a new file must avoid.
    taken: rustc_hash::FxHashSet<String>,
    cached: usize,
    fresh: Vec<String>,
    /// Why files were left out (bad name, not a regular file, unreadable):
    /// one warning line each, printed once the inputs have passed.
    skipped: Vec<String>,
    /// Crashed publishers' partial copies, removed once the inputs passed.
    stale: Vec<PathBuf>,
}

/// `Packages/` as listed: usable package names with their lstat results,
/// and every name present.
struct Listing {
    names: Vec<String>,
    stats: Vec<std::io::Result<libc::stat>>,
    taken: rustc_hash::FxHashSet<String>,
    skipped: Vec<String>,
    stale: Vec<PathBuf>,
}

/// List and lstat `Packages/`. Changes nothing (it may run before the
/// inputs are checked) and is independent of the cache, so it runs while
/// the cache is decoded.
fn list_packages(pkgdir: &Path) -> Result<Listing> {
    let mut taken = rustc_hash::FxHashSet::default();
    let (mut names, mut skipped, mut stale) = (Vec::new(), Vec::new(), Vec::new());
    for de in std::fs::read_dir(pkgdir).with_context(|| format!("listing {}", pkgdir.display()))? {
        let de = de.with_context(|| format!("listing {}", pkgdir.display()))?;
        let name = de.file_name().to_string_lossy().into_owned();
        if name.starts_with(TMP_PREFIX) {
            stale.push(de.path());
            continue;
        }
        taken.insert(name.clone());
        if name.starts_with('.') || !name.ends_with(".rpm") {
            continue;
        }
        if let Err(e) = guard::check_file_name(&name) {
            skipped.push(format!("{}: {e}", pkgdir.join(&name).display()));
            continue;
        }
        names.push(name);
    }
    let stats = stat_all(pkgdir, &names)?;
    Ok(Listing {
        names,
        stats,
        taken,
        skipped,
        stale,
    })
}

/// Reuse cached metadata of the listed files that are unchanged; read the
/// headers of the others. Files that cannot be published (bad name, not a
/// regular file, unreadable) are skipped, never fatal.
fn scan_packages(
    pkgdir: &Path,
    listing: Listing,
    old_cache: &mut cache::Cache,
    reporter: &dyn crate::progress::Reporter,
) -> Result<Scan> {
    let Listing {
        names,
        stats,
        taken,
        mut skipped,
        stale,
    } = listing;
    let mut entries = cache::Entries::with_capacity_and_hasher(names.len(), Default::default());
    let mut todo = Vec::new();
    for (name, st) in names.into_iter().zip(stats) {
        let st = st.with_context(|| format!("stat {}", pkgdir.join(&name).display()))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            skipped.push(format!(
                "{}: not a regular file",
                pkgdir.join(&name).display()
            ));
            continue;
        }
        match old_cache.take(&name, &cache::StatKey::of_stat(&st)) {
            Some(e) => {
                entries.insert(name, e);
            }
            None => todo.push((name, st)),
        }
    }
    let cached = entries.len();
    let mut fresh = Vec::with_capacity(todo.len());
    for e in read_many(pkgdir, todo, reporter, &mut skipped)? {
        let name = e.file_name().to_string();
        fresh.push(name.clone());
        entries.insert(name, e);
    }
    Ok(Scan {
        entries,
        taken,
        cached,
        fresh,
        skipped,
        stale,
    })
}

/// lstat every name in `dir`, on every core (a stat is a system call, and
/// a large repository has tens of thousands of them per publish).
fn stat_all(dir: &Path, names: &[String]) -> Result<Vec<std::io::Result<libc::stat>>> {
    let d = std::fs::File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = names.len().div_ceil(threads).max(1024);
    Ok(std::thread::scope(|s| {
        let handles: Vec<_> = names
            .chunks(per)
            .map(|part| {
                let d = &d;
                s.spawn(move || {
                    part.iter()
                        .map(|n| crate::util::fsx::lstat_at(d, n))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("stat thread panicked"))
            .collect()
    }))
}

fn entry_nevra(e: &cache::Entry) -> String {
    if e.epoch == 0 {
        format!("{}-{}-{}.{}", e.name, e.version, e.release, e.arch)
    } else {
        format!(
            "{}-{}:{}-{}.{}",
            e.name, e.epoch, e.version, e.release, e.arch
        )
    }
}

/// File names (under `Packages/`) the current metadata generation lists.
fn current_locations(repo: &Path) -> std::collections::HashSet<String> {
    let read = || -> Result<std::collections::HashSet<String>> {
        let xml = std::fs::read(repo.join("repodata/repomd.xml"))?;
        let (_, records) = repomd::parse(&xml)?;
        let primary = records
            .iter()
            .find(|r| r.kind == "primary")
            .ok_or_else(|| anyhow!("no primary"))?;
        crate::util::validate::relative_path("location", &primary.href).map_err(|e| anyhow!(e))?;
        let entries = verify::read_primary(repomd::open_decompressed(&repo.join(&primary.href))?)?;
        Ok(entries
            .into_iter()
            .filter_map(|p| p.href.strip_prefix("Packages/").map(str::to_owned))
            .collect())
    };
    read().unwrap_or_default()
}

/// Keep one file per NEVRA: the one the current metadata lists (else the
/// shortest name). Returns the others: unreferenced duplicates, such as the
/// new file of a `--replace` killed before the metadata swap.
fn drop_duplicates(repo: &Path, entries: &mut cache::Entries) -> Vec<String> {
    // Borrowed keys: this runs over every package of every publish.
    type Nevra<'a> = (&'a str, u32, &'a str, &'a str, &'a str);
    let mut by_nevra: rustc_hash::FxHashMap<Nevra, Vec<&str>> =
        rustc_hash::FxHashMap::with_capacity_and_hasher(entries.len(), Default::default());
    for (name, e) in entries.iter() {
        by_nevra
            .entry((&e.name, e.epoch, &e.version, &e.release, &e.arch))
            .or_default()
            .push(name);
    }
    let dups: Vec<Vec<String>> = by_nevra
        .into_values()
        .filter(|v| v.len() > 1)
        .map(|v| v.into_iter().map(str::to_string).collect())
        .collect();
    if dups.is_empty() {
        return Vec::new();
    }
    let listed = current_locations(repo);
    let mut dropped = Vec::new();
    for mut names in dups {
        // Listed first, then the shortest (canonical) name.
        names.sort_by_key(|n| (!listed.contains(n), n.len(), n.clone()));
        for n in names.drain(1..) {
            entries.remove(&n);
            dropped.push(n);
        }
    }
    dropped.sort();
    dropped
}

/// (input index, target file name) of each input to copy.
type Copies = Vec<(usize, String)>;

/// Where each input goes. Refuses (before anything is copied) an input
/// whose NEVRA is in the repository with other content, unless `replace`.
/// Returns (input index, target file name) for the inputs to copy and the
/// names they replace.
fn place_inputs(
    pkgdir: &Path,
    incoming: &[&Incoming],
    scan: &Scan,
    replace: bool,
) -> Result<(Copies, Vec<String>)> {
    let wanted: std::collections::HashSet<&str> =
        incoming.iter().map(|i| i.nevra.as_str()).collect();
    let by_nevra: HashMap<String, &str> = scan
        .entries
        .iter()
        .map(|(name, e)| (entry_nevra(e), name.as_str()))
        .filter(|(nevra, _)| wanted.contains(nevra.as_str()))
        .collect();
    let mut added = std::collections::HashSet::new();
    let taken = |n: &str, added: &std::collections::HashSet<String>| {
        scan.taken.contains(n) || added.contains(n)
    };
    let mut copies = Vec::new();
    let mut replaced = Vec::new();
    for (i, inc) in incoming.iter().enumerate() {
        if let Some(existing) = by_nevra.get(&inc.nevra) {
            let path = pkgdir.join(existing);
            let sum = crate::util::fsx::sha256_file(&path)?;
            if sum == inc.sha256 {
                continue; // Already there, byte for byte.
            }
            if !replace {
                bail!(
                    "{}: {} is already in the repository as Packages/{existing} with different content; pass --replace to replace it",
                    inc.shown.display(),
                    inc.nevra
                );
            }
            replaced.push(existing.to_string());
        }
        let name = if !taken(&inc.file_name, &added) {
            inc.file_name.clone()
        } else {
            let stem = inc.file_name.trim_end_matches(".rpm");
            let n = format!("{stem}.{}.rpm", &inc.sha256[..16]);
            guard::check_file_name(&n)
                .map_err(|e| anyhow!("{}: cannot be stored as {n:?}: {e}", inc.shown.display()))?;
            if taken(&n, &added) {
                bail!(
                    "{}: both {} and {n} are taken in {}",
                    inc.shown.display(),
                    inc.file_name,
                    pkgdir.display()
                );
            }
            n
        };
        added.insert(name.clone());
        copies.push((i, name));
    }
    Ok((copies, replaced))
}

/// Order packages as the metadata lists them: name, EVR, arch, location.
/// Sorts indices, then moves each entry once: an entry is about 300 bytes,
/// and sorting 10,000 of them in place spent more time moving than
/// comparing.
fn sort_entries(entries: &mut Vec<cache::Entry>) {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    // Unstable is exact: the location breaks every tie.
    order.sort_unstable_by(|&i, &j| {
        let (a, b) = (&entries[i], &entries[j]);
        a.name
            .cmp(&b.name)
            .then_with(|| entry_evr_cmp(a, b))
            .then_with(|| a.arch.cmp(&b.arch))
            .then_with(|| a.location.cmp(&b.location))
    });
    let mut slots: Vec<Option<cache::Entry>> = entries.drain(..).map(Some).collect();
    entries.extend(order.into_iter().filter_map(|i| slots[i].take()));
}

/// What a part's `Packages/` holds: the cache as loaded, the scan, and the
/// duplicate files to remove.
struct PartState {
    old_cache: cache::Cache,
    scan: Scan,
    duplicates: Vec<String>,
}

/// Read one part (its `Packages/` must exist): cached metadata of unchanged
/// files, headers of the others. Under the lock, and it changes and prints
/// nothing (what to remove and warn about is kept for [`publish_part`]), so
/// it may run while the inputs are still being checked.
fn read_part(part_dir: &Path, reporter: &dyn crate::progress::Reporter) -> Result<PartState> {
    let pkgdir = part_dir.join("Packages");
    // Decoding a 10,000-package cache and listing as many files take about
    // as long each; do both at once.
    let (mut old_cache, listing) = std::thread::scope(|s| {
        let listing = s.spawn(|| list_packages(&pkgdir));
        let cache = cache::Cache::load(part_dir);
        let listing = listing
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the listing thread panicked")));
        (cache, listing)
    });
    let mut scan = scan_packages(&pkgdir, listing?, &mut old_cache, reporter)?;
    let duplicates = drop_duplicates(part_dir, &mut scan.entries);
    Ok(PartState {
        old_cache,
        scan,
        duplicates,
    })
}

/// Publish one part `repo` (the top level or `DIR/<dist>`; the caller,
/// [`layout::publish`], holds the repository lock and has checked the
/// inputs): copy `incoming` in, apply retention, regenerate and sign the
/// metadata, and swap it in atomically. `state` is the part as
/// [`read_part`] found it under this lock, if the caller read it already.
fn publish_part(
    repo: &Path,
    state: Option<PartState>,
    incoming: &[&Incoming],
    opts: &PublishOptions,
    safety: &Safety,
) -> Result<PartOutcome> {
    let t0 = std::time::Instant::now();
    let phase = |what: &str| {
        if std::env::var_os("KHOTFIX_PHASES").is_some() {
            eprintln!("phase {what}: {:?}", t0.elapsed());
        }
    };
    let pkgdir = repo.join("Packages");
    std::fs::create_dir_all(&pkgdir).with_context(|| format!("creating {}", pkgdir.display()))?;
    let PartState {
        old_cache,
        scan,
        duplicates,
    } = match state {
        Some(s) => s,
        None => read_part(repo, opts.reporter.as_ref())?,
    };
    cleanup_temporaries(repo);
    for p in &scan.stale {
        let _ = std::fs::remove_file(p);
    }
    for why in &scan.skipped {
        warn_skip(why);
    }
    phase("scanned");

    let (copies, replaced) = place_inputs(&pkgdir, incoming, &scan, safety.replace)?;
    let mut added = Vec::new();
    for (i, name) in &copies {
        copy_in(&incoming[*i].src, &pkgdir, name)?;
        added.push(name.clone());
    }
    if !added.is_empty() {
        crate::util::fsx::sync_dir(&pkgdir)?;
    }
    phase("copied");
    let stats = stat_all(&pkgdir, &added)?;
    let mut todo = Vec::with_capacity(added.len());
    for (name, st) in added.iter().zip(stats) {
        let st = st.with_context(|| format!("stat {}", pkgdir.join(name).display()))?;
        todo.push((name.clone(), st));
    }
    let mut unreadable = Vec::new();
    let read_new = read_many(&pkgdir, todo, opts.reporter.as_ref(), &mut unreadable)?;
    for why in &unreadable {
        warn_skip(why);
    }
    if read_new.len() != added.len() {
        bail!(
            "a package copied into {} could not be read back",
            pkgdir.display()
        );
    }
    let mut entries = scan.entries;
    let mut fresh = scan.fresh;
    for e in read_new {
        let name = e.file_name().to_string();
        fresh.push(name.clone());
        entries.insert(name, e);
    }
    for name in &replaced {
        entries.remove(name);
    }
    let cached = scan.cached;
    let read = fresh.len();

    phase("read");
    // Retention.
    let all: Vec<cache::Entry> = entries.into_values().collect();
    let (mut kept, removed) = match opts.keep {
        Some(n) => retention(all, n, |e| e.name.as_str(), entry_evr_cmp),
        None => (all, Vec::new()),
    };
    sort_entries(&mut kept);
    let mut removed_names: Vec<String> =
        removed.iter().map(|e| e.file_name().to_string()).collect();
    removed_names.extend(replaced.iter().cloned());
    removed_names.extend(duplicates.iter().cloned());

    phase("sorted");
    // Write the new generation.
    let revision = now_secs();
    let gen_tmp = repo.join(format!(
        ".repodata.tmp-{}-{}",
        std::process::id(),
        now_nanos()
    ));
    std::fs::create_dir(&gen_tmp).with_context(|| format!("creating {}", gen_tmp.display()))?;
    let mut chunks = gzchunks::ChunkCache::load(repo);
    phase("chunks loaded");
    let records = write_generation(&gen_tmp, &kept, opts.compress, revision, &mut chunks)?;
    phase("datafiles");
    // The caches describe files and chunk contents, not the generation, so
    // they are written while the metadata is signed and swapped in (losing
    // them to a crash either way only costs the next publish time).
    let packages = kept.len();
    let (kept_ref, fresh_ref, chunks_ref) = (&kept, &fresh, &chunks);
    let (gen_name, previous) = std::thread::scope(|s| {
        let saver = s.spawn(move || {
            if let Err(e) = old_cache.save(repo, kept_ref, fresh_ref, cached) {
                eprintln!("khotfix: warning: {e:#} (the next publish re-reads the headers)");
            }
            if opts.compress == Compression::Gz {
                if let Err(e) = chunks_ref.save(repo) {
                    eprintln!("khotfix: warning: {e:#} (the next publish deflates every chunk)");
                }
            }
        });
        let committed = sign_and_swap(repo, &gen_tmp, revision, &records, &opts.key);
        if saver.join().is_err() {
            eprintln!("khotfix: warning: saving the caches failed (the next publish is slower)");
        }
        committed
    })?;
    phase("swapped");
    for name in &removed_names {
        let p = pkgdir.join(name);
        if let Err(e) = std::fs::remove_file(&p) {
            eprintln!("khotfix: warning: cannot remove {}: {e}", p.display());
        }
    }
    prune_generations(repo, &gen_name, previous.as_deref());

    Ok(PartOutcome {
        revision,
        added,
        removed: removed_names,
        packages,
        cached,
        read,
        metadata: records,
    })
}

/// Write and sign `repomd.xml` in the generation `gen_tmp`, move it into
/// place and point `repodata` at it: the commit. Returns the generation's
/// name and the one `repodata` pointed to before.
///
/// Every file of the generation is fsynced before the rename: the data
/// files while repomd.xml is rendered and signed, then repomd.xml and its
/// signature, each in its own thread, so the journal commits they wait for
/// overlap (one after the other, the five fsyncs took 4-5 ms here).
fn sign_and_swap(
    repo: &Path,
    gen_tmp: &Path,
    revision: u64,
    records: &[DataRecord],
    key: &crate::keys::PackageSigner,
) -> Result<(String, Option<String>)> {
    let data_files: Vec<PathBuf> = records
        .iter()
        .map(|r| gen_tmp.join(r.href.trim_start_matches("repodata/")))
        .collect();
    std::thread::scope(|s| -> Result<()> {
        let data_synced: Vec<_> = data_files
            .iter()
            .map(|p| s.spawn(move || sync_file(p)))
            .collect();
        let repomd_xml = repomd::render(revision, records);
        let signature = key.sign_detached_armored(repomd_xml.as_bytes(), now_secs())?;
        let asc =
            s.spawn(move || write_synced(&gen_tmp.join("repomd.xml.asc"), signature.as_bytes()));
        write_synced(&gen_tmp.join("repomd.xml"), repomd_xml.as_bytes())?;
        join_all(data_synced.into_iter().chain([asc]))
    })?;
    crate::util::fsx::sync_dir(gen_tmp)?;
    let gen_name = format!(".repodata-{}", now_nanos());
    std::fs::rename(gen_tmp, repo.join(&gen_name))
        .with_context(|| format!("renaming {} into place", gen_tmp.display()))?;
    let previous = swap_repodata(repo, &gen_name)?;
    Ok((gen_name, previous))
}

/// fsync a file that is already written.
fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", path.display()))
}

/// Join scoped threads, returning the first error.
fn join_all<'s>(
    handles: impl IntoIterator<Item = std::thread::ScopedJoinHandle<'s, Result<()>>>,
) -> Result<()> {
    let mut first = Ok(());
    for h in handles {
        let r = h
            .join()
            .unwrap_or_else(|_| Err(anyhow!("a syncing thread panicked")));
        if first.is_ok() {
            first = r;
        }
    }
    first
}

/// Files clients download must be world-readable whatever the umask of the
/// temporary-file helper (tempfile creates 0600).
pub(crate) fn make_public(f: &std::fs::File) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
        .context("setting file permissions to 0644")
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    make_public(&f)?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))
}

/// Atomically (temporary file, fsync, rename) write a world-readable file,
/// unless it already has exactly this content.
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).map(|b| b == bytes).unwrap_or(false) {
        return Ok(());
    }
    crate::util::fsx::write_atomic_mode(path, bytes, Some(0o644))
}

/// Write primary, filelists and other from the packages' rendered fragments
/// (nothing is rendered again here): gzip through the chunk cache
/// ([`gzchunks`]), zstd as one stream per file.
fn write_generation(
    dir: &Path,
    pkgs: &[cache::Entry],
    comp: Compression,
    timestamp: u64,
    chunks: &mut gzchunks::ChunkCache,
) -> Result<Vec<DataRecord>> {
    let headers = [
        repodata::primary_header(pkgs.len()),
        repodata::filelists_header(pkgs.len()),
        repodata::other_header(pkgs.len()),
    ];
    let files: Vec<gzchunks::DataFile> = [
        ("primary", repodata::PRIMARY_FOOTER),
        ("filelists", repodata::FILELISTS_FOOTER),
        ("other", repodata::OTHER_FOOTER),
    ]
    .into_iter()
    .zip(&headers)
    .enumerate()
    .map(|(i, ((kind, footer), header))| gzchunks::DataFile {
        kind,
        header: header.as_bytes(),
        fragments: pkgs
            .iter()
            .map(|e| match i {
                0 => e.primary.as_bytes(),
                1 => e.filelists.as_bytes(),
                _ => e.other.as_bytes(),
            })
            .collect(),
        footer: footer.as_bytes(),
    })
    .collect();
    match comp {
        Compression::Gz => {
            let digests: Vec<gzchunks::Key> = pkgs.iter().map(|e| e.digest).collect();
            let ends = gzchunks::chunk_ends(&digests);
            let mut writers = files
                .iter()
                .map(|_| repomd::DataFileWriter::new(dir))
                .collect::<Result<Vec<_>>>()?;
            let written = gzchunks::write_files(
                chunks,
                &files,
                &digests,
                &ends,
                writers.iter_mut().map(|w| w.sink()).collect(),
            )?;
            writers
                .into_iter()
                .zip(written)
                .map(|(w, f)| w.finish(&f.kind, comp, (f.open_sha256, f.open_size), timestamp))
                .collect()
        }
        Compression::Zstd => std::thread::scope(|s| {
            let handles: Vec<_> = files
                .iter()
                .map(|f| {
                    s.spawn(move || {
                        let mut parts = Vec::with_capacity(f.fragments.len() + 2);
                        parts.push(f.header);
                        parts.extend(&f.fragments);
                        parts.push(f.footer);
                        repomd::write_data_file(dir, f.kind, &parts, comp, timestamp)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("a writer thread panicked")))
                })
                .collect()
        }),
    }
}

/// Point `DIR/repodata` at `gen_name` with one atomic rename. Returns the
/// generation it pointed to before (to keep it one more round).
fn swap_repodata(repo: &Path, gen_name: &str) -> Result<Option<String>> {
    let link = repo.join("repodata");
    let link_tmp = repo.join(format!(".repodata.link-{}", now_nanos()));
    std::os::unix::fs::symlink(gen_name, &link_tmp)
        .with_context(|| format!("creating {}", link_tmp.display()))?;
    let previous = match std::fs::symlink_metadata(&link) {
        Ok(md) if md.file_type().is_symlink() => {
            let target = std::fs::read_link(&link)
                .ok()
                .map(|t| t.to_string_lossy().into_owned());
            std::fs::rename(&link_tmp, &link)
                .with_context(|| format!("replacing {}", link.display()))?;
            target
        }
        Ok(md) if md.file_type().is_dir() => {
            // A repository made by another tool: swap the real directory and
            // our symlink in one step (renameat2 RENAME_EXCHANGE), then keep
            // the old directory as the previous generation.
            crate::util::fsx::exchange(&link_tmp, &link).with_context(|| {
                format!("exchanging {} and {}", link_tmp.display(), link.display())
            })?;
            let legacy = format!(".repodata-legacy-{}", now_nanos());
            std::fs::rename(&link_tmp, repo.join(&legacy))
                .with_context(|| format!("moving the old {} aside", link.display()))?;
            Some(legacy)
        }
        Ok(_) => bail!(
            "{} exists and is neither a directory nor a symlink",
            link.display()
        ),
        Err(_) => {
            std::fs::rename(&link_tmp, &link)
                .with_context(|| format!("creating {}", link.display()))?;
            None
        }
    };
    crate::util::fsx::sync_dir(repo)?;
    Ok(previous)
}

/// Prefix of temporary files; a crashed publisher's are removed under the
/// lock (in `Packages/` by [`scan_packages`], which lists it anyway).
const TMP_PREFIX: &str = ".khotfix-tmp-";

/// Remove leftovers of crashed publishers in the part's top directory (only
/// called under the lock).
fn cleanup_temporaries(repo: &Path) {
    let Ok(rd) = std::fs::read_dir(repo) else {
        return;
    };
    for de in rd.flatten() {
        let name = de.file_name().to_string_lossy().into_owned();
        let path = de.path();
        if name.starts_with(".repodata.tmp-") {
            let _ = std::fs::remove_dir_all(&path);
        } else if name.starts_with(".repodata.link-") || name.starts_with(TMP_PREFIX) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Keep the current and the previous generation; remove older ones.
fn prune_generations(repo: &Path, current: &str, previous: Option<&str>) {
    let Ok(rd) = std::fs::read_dir(repo) else {
        return;
    };
    for de in rd.flatten() {
        let name = de.file_name().to_string_lossy().into_owned();
        if name.starts_with(".repodata-") && name != current && Some(name.as_str()) != previous {
            let _ = std::fs::remove_dir_all(de.path());
        }
    }
}
