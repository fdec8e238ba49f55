//! One repository, several distros: which part of the repository a package
//! goes to, and the publish that walks every part.
//!
//! ```text
//! DIR/<rpm_dist>/Packages/*.rpm   packages whose release ends in .<rpm_dist>
//! DIR/<rpm_dist>/repodata         that part's own signed metadata
//! DIR/<rpm_dist>/khotfix.repo     a client .repo for that part
//! DIR/Packages/, DIR/repodata     packages without a known dist tag
//! DIR/khotfix.repo                (stand-ins, third-party tools), only
//!                                 when there are such packages
//! DIR/RPM-GPG-KEY-khotfix         the one public key of every part
//! DIR/khotfix-release-latest-<rpm_dist>.noarch.rpm   see `release`
//! DIR/.khotfix.lock               one lock for the whole repository
//! ```
//!
//! Why per dist: el7, al8 and deb12 hosts must never see each other's
//! packages in one repodata (a glob such as `kernel-hotfix-*` would offer
//! them all). The dist tags are data: `rpm_dist` of the built-in distros
//! (src/distros/*.toml). A package's part is decided by its release alone
//! (`20250804154834.al8` → `al8`), the tail rpm itself sorts by.
//!
//! Atomicity: each part's metadata is swapped in with one rename (see the
//! module docs of `publish`); a publish that touches several parts commits
//! them one after another under the one lock, so a crash between two parts
//! leaves each part either old or new, never mixed.

use super::{Incoming, PublishOptions, Safety};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The dist tags that get a part of their own: `rpm_dist` of every
/// built-in distro.
pub fn known_dists() -> Vec<String> {
    let mut v: Vec<String> = crate::distro::Distro::names()
        .into_iter()
        .filter_map(|n| crate::distro::Distro::builtin(n).ok())
        .map(|d| d.rpm_dist)
        .filter(|d| crate::util::validate::package_token("rpm dist", d).is_ok())
        .filter(|d| !matches!(d.as_str(), "Packages" | "repodata"))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The dist tag of a package release (`1.0.20250804154834.al8` → `al8`),
/// when it is one of `known`.
pub fn dist_of_release<'a>(release: &str, known: &'a [String]) -> Option<&'a str> {
    let (_, tail) = release.rsplit_once('.')?;
    known.iter().map(String::as_str).find(|d| *d == tail)
}

/// The dist tag of an RPM file named `name-version-release.arch.rpm`.
pub fn dist_of_file_name<'a>(file_name: &str, known: &'a [String]) -> Option<&'a str> {
    let nvra = file_name.strip_suffix(".rpm")?;
    let (nvr, _arch) = nvra.rsplit_once('.')?;
    let (_, release) = nvr.rsplit_once('-')?;
    dist_of_release(release, known)
}

/// One part of the repository: the top level (`dist` None) or `DIR/<dist>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Part {
    pub dist: Option<String>,
}

impl Part {
    pub fn dir(&self, repo: &Path) -> PathBuf {
        match &self.dist {
            Some(d) => repo.join(d),
            None => repo.to_path_buf(),
        }
    }

    /// Path of `name` inside this part, relative to the repository.
    pub fn relative(&self, name: &str) -> String {
        match &self.dist {
            Some(d) => format!("{d}/{name}"),
            None => name.to_string(),
        }
    }

    /// The part's URL under the repository's base URL.
    pub fn url(&self, base: &str) -> String {
        let base = base.trim_end_matches('/');
        match &self.dist {
            Some(d) => format!("{base}/{d}"),
            None => base.to_string(),
        }
    }

    /// The .repo section name: `khotfix` or `khotfix-<dist>`.
    pub fn repo_id(&self) -> String {
        match &self.dist {
            Some(d) => format!("khotfix-{d}"),
            None => "khotfix".to_string(),
        }
    }
}

/// Parts that already exist: the top level when it has `Packages/` or
/// `repodata`, and `DIR/<dist>` for each known dist that has either.
pub fn existing_parts(repo: &Path, known: &[String]) -> Vec<Part> {
    let is_part = |dir: &Path| {
        dir.join("Packages").is_dir() || std::fs::symlink_metadata(dir.join("repodata")).is_ok()
    };
    let mut parts = Vec::new();
    if is_part(repo) {
        parts.push(Part { dist: None });
    }
    for d in known {
        if is_part(&repo.join(d)) {
            parts.push(Part {
                dist: Some(d.clone()),
            });
        }
    }
    parts
}

/// A client .repo file. `gpgkey` is where dnf takes the key from.
/// `skip_if_unavailable=False`: yum 3 and EL dnf default to it, but
/// Debian's dnf.conf sets True, which turns a missing or badly signed
/// repomd.xml into a warning and "No match" for the package.
pub fn client_repo_file(part: &Part, base_url: Option<&str>, gpgkey: &str, header: &str) -> String {
    let base = base_url.unwrap_or(super::BASEURL_PLACEHOLDER);
    let note = if base_url.is_none() {
        "# Replace the baseurl host with the server that hosts this directory.\n"
    } else {
        ""
    };
    let name = match &part.dist {
        Some(d) => format!("khotfix kernel hotfixes ({d})"),
        None => "khotfix kernel hotfixes".to_string(),
    };
    format!(
        "{header}{note}[{id}]\nname={name}\nbaseurl={url}\nenabled=1\ngpgcheck=1\nrepo_gpgcheck=1\ngpgkey={gpgkey}\nmetadata_expire=300\nskip_if_unavailable=False\n",
        id = part.repo_id(),
        url = part.url(base),
    )
}

/// The downloadable .repo of a part: the key from the server (trust on
/// first use; the `khotfix-release` RPM is the way around that).
pub fn served_repo_file(part: &Part, base_url: Option<&str>) -> String {
    let base = base_url
        .unwrap_or(super::BASEURL_PLACEHOLDER)
        .trim_end_matches('/');
    client_repo_file(
        part,
        base_url,
        &format!("{base}/{}", super::KEY_FILE),
        "# Written by khotfix publish. Install as /etc/yum.repos.d/khotfix.repo\n",
    )
}

/// What one part's publish did.
#[derive(Debug, Serialize)]
pub struct PartReport {
    /// The dist tag, or null for the top level.
    pub dist: Option<String>,
    /// The part's client .repo, relative to the repository.
    pub repo_file: String,
    pub revision: u64,
    pub packages: usize,
    pub cached: usize,
    pub read: usize,
    pub metadata: Vec<super::DataRecord>,
}

/// What a publish did (printed with `--json`).
#[derive(Debug, Serialize)]
pub struct PublishReport {
    pub repo: String,
    /// The newest revision among the parts.
    pub revision: u64,
    /// Paths relative to the repository that this publish added or replaced.
    pub added: Vec<String>,
    /// Paths removed by retention.
    pub removed: Vec<String>,
    /// Packages in the new metadata of all parts.
    pub packages: usize,
    /// Packages whose metadata came from the cache (not re-read).
    pub cached: usize,
    /// Packages whose headers were read in this publish.
    pub read: usize,
    pub parts: Vec<PartReport>,
    /// `khotfix-release` RPMs written or kept, relative to the repository.
    pub release_rpms: Vec<String>,
    /// Things the publisher should know (no release RPM without --base-url).
    pub notes: Vec<String>,
    pub key_fingerprint: String,
}

/// Publish: route `opts.rpms` to their parts, copy them in, and regenerate,
/// sign and swap in the metadata of every part, under one lock. Refuses
/// what [`Safety::default`] refuses.
pub fn publish(opts: &PublishOptions) -> Result<PublishReport> {
    publish_checked(opts, &Safety::default())
}

/// [`publish`] with explicit integrity choices.
pub fn publish_checked(opts: &PublishOptions, safety: &Safety) -> Result<PublishReport> {
    let repo = &opts.repo;
    if let Some(u) = &opts.base_url {
        super::check_base_url(u)?;
    }
    if opts.keep == Some(0) {
        bail!("--keep must be at least 1");
    }
    // Check every input (signatures too) and the layout before anything in
    // the repository changes.
    let scratch = tempfile::Builder::new()
        .prefix("khotfix-publish-")
        .tempdir()
        .context("creating a temporary directory")?;
    let known = known_dists();
    let GateAndRead {
        gate,
        read,
        lock: early_lock,
    } = gate_and_read(opts, safety, scratch.path(), &known);
    let incoming = gate?;
    let mut read = read?;
    super::guard::check_layout(repo)?;
    let mut routed: BTreeMap<Part, Vec<&Incoming>> = BTreeMap::new();
    for inc in &incoming {
        let dist = dist_of_file_name(&inc.file_name, &known).map(str::to_string);
        routed.entry(Part { dist }).or_default().push(inc);
    }
    // The release RPMs are signed with the same key.
    let signer = opts.base_url.as_ref().map(|_| &opts.key);

    std::fs::create_dir_all(repo).with_context(|| format!("creating {}", repo.display()))?;
    let _lock = match early_lock {
        Some(l) => l,
        None => super::lock::RepoLock::acquire(repo)?,
    };
    // From here on we see the state every earlier publisher committed.
    super::guard::check_layout(repo)?;
    super::cleanup_temporaries(repo);
    let mut parts = existing_parts(repo, &known);
    parts.extend(routed.keys().cloned());
    if parts.is_empty() {
        // A fresh repository and nothing to add: an empty top level.
        parts.push(Part { dist: None });
    }
    parts.sort();
    parts.dedup();

    // Key and client files first: the new repomd may be the first one
    // clients see.
    let public = opts.key.public_armored();
    super::write_if_changed(&repo.join(super::KEY_FILE), public.as_bytes())?;
    for part in &parts {
        let dir = part.dir(repo);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        super::write_if_changed(
            &dir.join(super::REPO_FILE),
            served_repo_file(part, opts.base_url.as_deref()).as_bytes(),
        )?;
    }
    let mut release_rpms = Vec::new();
    let mut notes = Vec::new();
    let dist_parts: Vec<&Part> = parts.iter().filter(|p| p.dist.is_some()).collect();
    match (&signer, opts.base_url.as_deref()) {
        (Some(signer), Some(base)) => {
            for part in &dist_parts {
                release_rpms.push(super::release::write_release_rpm(
                    repo, part, base, public, signer,
                )?);
            }
        }
        _ if !dist_parts.is_empty() => notes
            .push("no khotfix-release RPM: it needs the repository's URL (--base-url)".to_string()),
        _ => {}
    }

    let mut report = PublishReport {
        repo: repo.display().to_string(),
        revision: 0,
        added: Vec::new(),
        removed: Vec::new(),
        packages: 0,
        cached: 0,
        read: 0,
        parts: Vec::new(),
        release_rpms,
        notes,
        key_fingerprint: opts.key.fingerprint.clone(),
    };
    for part in &parts {
        let inputs = routed.get(part).map(Vec::as_slice).unwrap_or(&[]);
        let r = super::publish_part(&part.dir(repo), read.remove(part), inputs, opts, safety)?;
        let pkg = |n: &String| part.relative(&format!("Packages/{n}"));
        report.added.extend(r.added.iter().map(pkg));
        report.removed.extend(r.removed.iter().map(pkg));
        report.revision = report.revision.max(r.revision);
        report.packages += r.packages;
        report.cached += r.cached;
        report.read += r.read;
        report.parts.push(PartReport {
            dist: part.dist.clone(),
            repo_file: part.relative(super::REPO_FILE),
            revision: r.revision,
            packages: r.packages,
            cached: r.cached,
            read: r.read,
            metadata: r.metadata,
        });
    }
    Ok(report)
}

/// Check the inputs (in a thread) and, for a repository published to
/// before, take its lock and read its parts meanwhile: the gate's rpmkeys
/// runs and signatures take about as long as reading 10,000 packages'
/// metadata (issue 17). Reading changes and prints nothing, so bad inputs
/// still leave the repository as it was; a new repository (no lock file
/// yet) is only created once the inputs passed.
fn gate_and_read(
    opts: &PublishOptions,
    safety: &Safety,
    scratch: &Path,
    known: &[String],
) -> GateAndRead {
    let repo = &opts.repo;
    std::thread::scope(|s| {
        // The gate first: its error must not wait for another publisher.
        let gate = s.spawn(|| super::check_inputs(opts, safety, scratch));
        let lock = match repo.is_dir() {
            true => super::lock::RepoLock::acquire_existing(repo),
            false => None,
        };
        let read = match lock {
            Some(_) => read_parts(repo, known),
            None => Ok(BTreeMap::new()),
        };
        let gate = gate
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the input check panicked")));
        GateAndRead { gate, read, lock }
    })
}

/// What [`gate_and_read`] found.
struct GateAndRead {
    /// The checked inputs, or why they were refused.
    gate: Result<Vec<Incoming>>,
    /// The parts read under the early lock (none without it).
    read: Result<BTreeMap<Part, super::PartState>>,
    lock: Option<super::lock::RepoLock>,
}

/// [`super::read_part`] every existing part that has a `Packages/`, after
/// checking each part's layout (no symlinks to follow). Quietly: a progress
/// bar would show before the inputs are known to be good.
fn read_parts(repo: &Path, known: &[String]) -> Result<BTreeMap<Part, super::PartState>> {
    super::guard::check_layout(repo)?;
    let mut read = BTreeMap::new();
    for part in existing_parts(repo, known) {
        let dir = part.dir(repo);
        super::guard::check_layout(&dir)?;
        if dir.join("Packages").is_dir() {
            read.insert(part, super::read_part(&dir, &crate::progress::Quiet)?);
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_by_release_tail() {
        let known = known_dists();
        assert_eq!(known, vec!["al8", "deb12", "el7"]);
        let d = |f: &str| dist_of_file_name(f, &known);
        assert_eq!(
            d("kernel-hotfix-1-5.10.134-18-1.0-20250804154834.al8.x86_64.rpm"),
            Some("al8")
        );
        assert_eq!(
            d("kernel-hotfix-1-6.1.0-56-1.0-20250804154834.deb12.x86_64.rpm"),
            Some("deb12")
        );
        assert_eq!(d("kpatch-0.9.9-1.el7.noarch.rpm"), Some("el7"));
        // No tag, an unknown tag, the tag elsewhere than the release's end.
        assert_eq!(d("kpatch-0.9.9-1.noarch.rpm"), None);
        assert_eq!(d("kpatch-0.9.9-1.fc40.noarch.rpm"), None);
        assert_eq!(d("al8-0.9.9-1.noarch.rpm"), None);
        assert_eq!(d("x-el7-1.x86_64.rpm"), None);
        assert_eq!(d("junk"), None);
    }

    #[test]
    fn part_paths() {
        let top = Part { dist: None };
        let al8 = Part {
            dist: Some("al8".into()),
        };
        assert_eq!(top.url("http://h/r/"), "http://h/r");
        assert_eq!(al8.url("http://h/r/"), "http://h/r/al8");
        assert_eq!(al8.relative("khotfix.repo"), "al8/khotfix.repo");
        let f = served_repo_file(&al8, Some("http://h/r"));
        assert!(f.contains("\n[khotfix-al8]\n"), "{f}");
        assert!(f.contains("\nbaseurl=http://h/r/al8\n"), "{f}");
        assert!(
            f.contains("\ngpgkey=http://h/r/RPM-GPG-KEY-khotfix\n"),
            "{f}"
        );
    }
}
