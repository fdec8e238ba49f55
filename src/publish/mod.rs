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
//! P/.khotfix-cache/              per-package metadata cache
//! DIR/RPM-GPG-KEY-khotfix        the public key of every part
//! DIR/khotfix-release-latest-<rpm_dist>.noarch.rpm   [`release`]
//! DIR/.khotfix.lock              flock serialising publishers (whole repo)
//! ```
//!
//! Atomicity: a generation directory is written completely (and fsynced)
//! under a temporary name, then the `repodata` symlink is replaced with one
//! `rename(2)`. repomd.xml, its signature and the data files therefore change
//! together: a crash at any point leaves the old or the new generation
//! visible, never a mix. The previous generation is kept until the next
//! publish so a client that fetched the old repomd.xml a moment ago can still
//! fetch the data files it names.

pub mod cache;
pub mod layout;
pub mod lock;
pub mod release;
pub mod repodata;
pub mod repomd;
pub mod rpmmeta;
pub mod signing;
pub mod verify;

use anyhow::{anyhow, bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub use layout::{publish, PartReport, PublishReport};
pub use repomd::{Compression, DataRecord};
pub use rpmmeta::PackageMeta;
pub use signing::RepoKey;
pub use verify::{verify_repo, VerifyReport};

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
    pub key: RepoKey,
    pub compress: Compression,
    /// Written into khotfix.repo as baseurl (a placeholder when None).
    pub base_url: Option<String>,
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
    src: PathBuf,
    file_name: String,
}

fn check_input(path: &Path) -> Result<Incoming> {
    let md = rpm::PackageMetadata::open(path)
        .map_err(|e| anyhow!("{}: not a readable RPM: {e}", path.display()))?;
    let facts = rpmmeta::FileFacts {
        checksum: "",
        size: 0,
        mtime: 0,
        location: "",
    };
    let meta = rpmmeta::from_metadata(&md, &facts).with_context(|| path.display().to_string())?;
    Ok(Incoming {
        src: path.to_path_buf(),
        file_name: meta.file_name(),
    })
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
        .prefix(".khotfix-tmp-")
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
    tmp.persist(&dest)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming into {}", dest.display()))?;
    Ok((copied, true))
}

/// Read header + checksum of every package in `todo`, on all cores.
fn read_many(pkgdir: &Path, todo: Vec<(String, std::fs::Metadata)>) -> Result<Vec<cache::Entry>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    let chunk = todo.len().div_ceil(threads.max(1)).max(1);
    // A progress bar only for long reads on a terminal.
    let bar = if todo.len() >= 200 && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let b = indicatif::ProgressBar::new(todo.len() as u64);
        b.set_message("reading RPM headers");
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let results: Vec<Result<Vec<cache::Entry>>> = std::thread::scope(|s| {
        let handles: Vec<_> = todo
            .chunks(chunk)
            .map(|part| {
                let bar = bar.clone();
                s.spawn(move || {
                    part.iter()
                        .map(|(name, md)| {
                            let r = read_one(pkgdir, name, md);
                            bar.inc(1);
                            r
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a reader thread panicked")))
            })
            .collect()
    });
    bar.finish_and_clear();
    let mut out = Vec::new();
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

fn read_one(pkgdir: &Path, name: &str, md: &std::fs::Metadata) -> Result<cache::Entry> {
    use std::os::unix::fs::MetadataExt;
    let path = pkgdir.join(name);
    // One open: hash the whole file, then parse the header from the start.
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let checksum = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let parsed = rpm::PackageMetadata::parse(&mut std::io::Cursor::new(&bytes[..]))
        .map_err(|e| anyhow!("{}: not a readable RPM: {e}", path.display()))?;
    let location = format!("Packages/{name}");
    let facts = rpmmeta::FileFacts {
        checksum: &checksum,
        size: bytes.len() as u64,
        mtime: md.mtime().max(0) as u64,
        location: &location,
    };
    let meta =
        rpmmeta::from_metadata(&parsed, &facts).with_context(|| path.display().to_string())?;
    // Render here, on the reader threads; the cache keeps the fragments.
    Ok(cache::Entry::from_meta(cache::StatKey::of(md), &meta))
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

/// Publish one part `repo` (the top level or `DIR/<dist>`; the caller,
/// [`layout::publish`], holds the repository lock and has checked the
/// inputs): copy `incoming` in, apply retention, regenerate and sign the
/// metadata, and swap it in atomically.
fn publish_part(repo: &Path, incoming: &[&Incoming], opts: &PublishOptions) -> Result<PartOutcome> {
    let t0 = std::time::Instant::now();
    let phase = |what: &str| {
        if std::env::var_os("KHOTFIX_PHASES").is_some() {
            eprintln!("phase {what}: {:?}", t0.elapsed());
        }
    };
    let pkgdir = repo.join("Packages");
    std::fs::create_dir_all(&pkgdir).with_context(|| format!("creating {}", pkgdir.display()))?;
    phase("checked");
    cleanup_temporaries(repo, &pkgdir);

    let mut added = Vec::new();
    for inc in incoming {
        let (_, copied) = copy_in(&inc.src, &pkgdir, &inc.file_name)?;
        if copied {
            added.push(inc.file_name.clone());
        }
    }
    if !added.is_empty() {
        crate::util::fsx::sync_dir(&pkgdir)?;
    }

    phase("copied");
    // Scan Packages/: reuse cached metadata of unchanged files.
    let mut old_cache = cache::Cache::load(repo);
    phase("cache loaded");
    let mut entries: HashMap<String, cache::Entry> = HashMap::new();
    let mut todo = Vec::new();
    for de in std::fs::read_dir(&pkgdir).with_context(|| format!("listing {}", pkgdir.display()))? {
        let de = de.with_context(|| format!("listing {}", pkgdir.display()))?;
        let name = de.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".rpm") {
            continue;
        }
        crate::util::validate::package_token("package file name", &name)
            .map_err(|e| anyhow!("{}: {e}", pkgdir.join(&name).display()))?;
        let md = std::fs::symlink_metadata(de.path())
            .with_context(|| format!("stat {}", de.path().display()))?;
        if !md.file_type().is_file() {
            bail!("{}: not a regular file", de.path().display());
        }
        let key = cache::StatKey::of(&md);
        match old_cache.take(&name, &key) {
            Some(e) => {
                entries.insert(name, e);
            }
            None => todo.push((name, md)),
        }
    }
    phase("scanned");
    let cached = entries.len();
    let read = todo.len();
    let mut fresh = Vec::with_capacity(read);
    for e in read_many(&pkgdir, todo)? {
        let name = e.file_name().to_string();
        fresh.push(name.clone());
        entries.insert(name, e);
    }

    phase("read");
    // Retention.
    let all: Vec<cache::Entry> = entries.into_values().collect();
    let (mut kept, removed) = match opts.keep {
        Some(n) => retention(all, n, |e| e.name.as_str(), entry_evr_cmp),
        None => (all, Vec::new()),
    };
    kept.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| entry_evr_cmp(a, b))
            .then_with(|| a.arch.cmp(&b.arch))
            .then_with(|| a.location.cmp(&b.location))
    });
    let removed_names: Vec<String> = removed.iter().map(|e| e.file_name().to_string()).collect();

    phase("sorted");
    // Write the new generation.
    let revision = now_secs();
    let gen_tmp = repo.join(format!(
        ".repodata.tmp-{}-{}",
        std::process::id(),
        now_nanos()
    ));
    std::fs::create_dir(&gen_tmp).with_context(|| format!("creating {}", gen_tmp.display()))?;
    let records = write_generation(&gen_tmp, &kept, opts.compress, revision)?;
    phase("datafiles");
    let repomd_xml = repomd::render(revision, &records);
    let signature = opts.key.sign(repomd_xml.as_bytes())?;
    write_synced(&gen_tmp.join("repomd.xml"), repomd_xml.as_bytes())?;
    write_synced(&gen_tmp.join("repomd.xml.asc"), signature.as_bytes())?;
    crate::util::fsx::sync_dir(&gen_tmp)?;

    phase("signed");
    let gen_name = format!(".repodata-{}", now_nanos());
    std::fs::rename(&gen_tmp, repo.join(&gen_name))
        .with_context(|| format!("renaming {} into place", gen_tmp.display()))?;
    let previous = swap_repodata(repo, &gen_name)?;

    phase("swapped");
    // Committed. Now the bookkeeping that a crash may skip safely.
    let packages = kept.len();
    let new_entries: HashMap<String, cache::Entry> = kept
        .into_iter()
        .map(|e| (e.file_name().to_string(), e))
        .collect();
    if let Err(e) = old_cache.save(repo, &new_entries, &fresh, cached) {
        eprintln!("khotfix: warning: {e:#} (the next publish re-reads the headers)");
    }
    phase("cachesaved");
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
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".khotfix-tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    make_public(tmp.as_file())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming into {}", path.display()))?;
    crate::util::fsx::sync_dir(dir)
}

/// Compress primary, filelists and other in parallel from the packages'
/// rendered fragments (nothing is rendered again here).
fn write_generation(
    dir: &Path,
    pkgs: &[cache::Entry],
    comp: Compression,
    timestamp: u64,
) -> Result<Vec<DataRecord>> {
    type Fragment = fn(&cache::Entry) -> &[u8];
    let jobs: [(&str, String, Fragment, &str); 3] = [
        (
            "primary",
            repodata::primary_header(pkgs.len()),
            |e| e.primary.as_bytes(),
            repodata::PRIMARY_FOOTER,
        ),
        (
            "filelists",
            repodata::filelists_header(pkgs.len()),
            |e| e.filelists.as_bytes(),
            repodata::FILELISTS_FOOTER,
        ),
        (
            "other",
            repodata::other_header(pkgs.len()),
            |e| e.other.as_bytes(),
            repodata::OTHER_FOOTER,
        ),
    ];
    let results: Vec<Result<DataRecord>> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(kind, header, fragment, footer)| {
                s.spawn(move || {
                    let mut parts: Vec<&[u8]> = Vec::with_capacity(pkgs.len() + 2);
                    parts.push(header.as_bytes());
                    parts.extend(pkgs.iter().map(fragment));
                    parts.push(footer.as_bytes());
                    repomd::write_data_file(dir, kind, &parts, comp, timestamp)
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
    });
    results.into_iter().collect()
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
            exchange(&link_tmp, &link)?;
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

fn exchange(a: &Path, b: &Path) -> Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let ca = CString::new(a.as_os_str().as_bytes()).context("path contains NUL")?;
    let cb = CString::new(b.as_os_str().as_bytes()).context("path contains NUL")?;
    // SAFETY: both are valid NUL-terminated paths; AT_FDCWD resolves them
    // relative to the current directory like rename(2).
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("exchanging {} and {}", a.display(), b.display()));
    }
    Ok(())
}

/// Remove leftovers of crashed publishers (only called under the lock).
fn cleanup_temporaries(repo: &Path, pkgdir: &Path) {
    for dir in [repo, pkgdir] {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for de in rd.flatten() {
            let name = de.file_name().to_string_lossy().into_owned();
            let path = de.path();
            if name.starts_with(".repodata.tmp-") {
                let _ = std::fs::remove_dir_all(&path);
            } else if name.starts_with(".repodata.link-") || name.starts_with(".khotfix-tmp-") {
                let _ = std::fs::remove_file(&path);
            }
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
