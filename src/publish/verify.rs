//! `khotfix repo verify`: check a repository the way a careful client would.
//!
//! * repomd.xml.asc is a valid signature of repomd.xml by the repository key
//!   (`RPM-GPG-KEY-khotfix`);
//! * every data file matches repomd.xml (size, sha256, open-size,
//!   open-checksum);
//! * every package in primary exists with the recorded size and sha256;
//! * every package's own OpenPGP signature verifies (`rpm -K` against a
//!   throwaway rpm database that holds only the repository key).
//!
//! Every part of the repository (the top level and each `DIR/<rpm_dist>`,
//! see `layout`) is checked this way against the one key, and every
//! `khotfix-release` RPM's signature too; problems in a part are prefixed
//! with its directory (`al8/Packages/…`).
//!
//! Problems are collected (one line each) rather than stopping at the first,
//! so one run shows everything that is wrong. An `Err` means the repository
//! could not be read at all.

use super::repomd::{self, DataRecord};
use crate::package::keydb::{KeyDb, SigVerdict};
use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// What `repo verify` found in a repository: problems as lines (the
/// command's output). Not [`crate::verify::VerifyReport`], the verify
/// stage's typed checks of one job's module and RPM: the subjects differ,
/// and so do their persisted JSON forms; the distinct name keeps them apart.
#[derive(Debug, Serialize)]
pub struct RepoVerifyReport {
    pub repo: String,
    /// The newest revision among the parts.
    pub revision: u64,
    /// Packages in all parts.
    pub packages: usize,
    pub problems: Vec<String>,
    pub parts: Vec<PartVerified>,
}

/// One part's figures.
#[derive(Debug, Serialize)]
pub struct PartVerified {
    /// The dist tag, or null for the top level.
    pub dist: Option<String>,
    pub revision: u64,
    pub packages: usize,
}

impl RepoVerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One package as primary.xml records it.
#[derive(Debug, Default, Clone)]
pub struct PrimaryEntry {
    pub name: String,
    pub checksum: String,
    pub size: u64,
    pub href: String,
}

/// Stream (decompressed) primary.xml with the shared reader and return the
/// fields verify needs, missing ones empty. Errors are one line.
pub fn read_primary(r: impl Read) -> Result<Vec<PrimaryEntry>> {
    let mut out = Vec::new();
    crate::repodata::primary::read(std::io::BufReader::new(r), |e| {
        out.push(PrimaryEntry {
            name: e.name.unwrap_or_default(),
            checksum: e.checksum.unwrap_or_default().trim().to_string(),
            size: e.size.unwrap_or(0),
            href: e.location.unwrap_or_default(),
        });
        Ok(())
    })?;
    Ok(out)
}

fn sha256_and_len(mut r: impl Read) -> std::io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

fn check_data_file(repo: &Path, rec: &DataRecord, problems: &mut Vec<String>) -> bool {
    let href = &rec.href;
    if crate::util::validate::relative_path("location", href).is_err() {
        problems.push(format!(
            "repomd.xml: {} location {href:?} leaves the repository",
            rec.kind
        ));
        return false;
    }
    let path = repo.join(href);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            problems.push(format!("{href}: cannot open: {e}"));
            return false;
        }
    };
    let mut ok = true;
    match sha256_and_len(file) {
        Ok((sum, len)) => {
            if len != rec.size {
                problems.push(format!(
                    "{href}: size {len} differs from repomd.xml ({})",
                    rec.size
                ));
                ok = false;
            }
            if sum != rec.checksum {
                problems.push(format!("{href}: sha256 differs from repomd.xml"));
                ok = false;
            }
        }
        Err(e) => {
            problems.push(format!("{href}: cannot read: {e}"));
            return false;
        }
    }
    if ok && !rec.open_checksum.is_empty() {
        match repomd::open_decompressed(&path).and_then(|r| Ok(sha256_and_len(r)?)) {
            Ok((sum, len)) => {
                if sum != rec.open_checksum || (rec.open_size != 0 && len != rec.open_size) {
                    problems.push(format!(
                        "{href}: uncompressed content differs from repomd.xml"
                    ));
                    ok = false;
                }
            }
            Err(e) => {
                problems.push(format!("{href}: cannot decompress: {e:#}"));
                ok = false;
            }
        }
    }
    ok
}

/// Verify the repository at `repo`: every part, every release RPM.
pub fn verify_repo(repo: &Path) -> Result<RepoVerifyReport> {
    let known = super::layout::known_dists();
    let mut parts = super::layout::existing_parts(repo, &known);
    if parts.is_empty() {
        // Nothing that looks like a repository: report the top level's
        // missing repomd.xml.
        parts.push(super::layout::Part { dist: None });
    }
    let key_path = repo.join(super::KEY_FILE);
    let key = std::fs::read_to_string(&key_path)
        .with_context(|| format!("{}: cannot read the repository key", key_path.display()))?;
    let mut report = RepoVerifyReport {
        repo: repo.display().to_string(),
        revision: 0,
        packages: 0,
        problems: Vec::new(),
        parts: Vec::new(),
    };
    for part in &parts {
        let (revision, packages, problems) = verify_part(&part.dir(repo), &key_path, &key)?;
        report.revision = report.revision.max(revision);
        report.packages += packages;
        report
            .problems
            .extend(problems.iter().map(|p| part.relative(p)));
        report.parts.push(PartVerified {
            dist: part.dist.clone(),
            revision,
            packages,
        });
    }
    let releases: Vec<String> = known
        .iter()
        .map(|d| super::release::file_name(d))
        .filter(|f| repo.join(f).is_file())
        .collect();
    check_signatures(repo, &key_path, &releases, &mut report.problems)?;
    Ok(report)
}

/// Verify one part (`DIR` or `DIR/<dist>`) against the repository key:
/// (revision, packages, problems with paths relative to the part).
fn verify_part(repo: &Path, key_path: &Path, key: &str) -> Result<(u64, usize, Vec<String>)> {
    let repomd_path = repo.join("repodata/repomd.xml");
    let repomd_bytes = std::fs::read(&repomd_path)
        .with_context(|| format!("{}: cannot read", repomd_path.display()))?;
    let mut problems = Vec::new();

    match std::fs::read_to_string(repo.join("repodata/repomd.xml.asc")) {
        Ok(sig) => {
            if let Err(e) = crate::keys::verify_detached(key, &sig, &repomd_bytes) {
                problems.push(format!("repodata/repomd.xml.asc: {e:#}"));
            }
        }
        Err(e) => problems.push(format!("repodata/repomd.xml.asc: cannot read: {e}")),
    }

    let (revision, records) = match repomd::parse(&repomd_bytes) {
        Ok(x) => x,
        Err(e) => {
            problems.push(format!("repodata/repomd.xml: {e:#}"));
            return Ok((0, 0, problems));
        }
    };
    let mut primary_ok = None;
    for rec in &records {
        let ok = check_data_file(repo, rec, &mut problems);
        if rec.kind == "primary" {
            primary_ok = Some((ok, rec.href.clone()));
        }
    }
    let mut packages = 0;
    match primary_ok {
        None => problems.push("repodata/repomd.xml: no primary metadata".to_string()),
        Some((false, href)) => problems.push(format!(
            "{href}: packages not checked (primary metadata is damaged)"
        )),
        Some((true, href)) => {
            let entries = repomd::open_decompressed(&repo.join(&href))
                .and_then(read_primary)
                .with_context(|| format!("{href}: cannot parse"))?;
            packages = entries.len();
            let mut to_sig_check = Vec::new();
            for p in &entries {
                if crate::util::validate::relative_path("location", &p.href).is_err() {
                    problems.push(format!(
                        "{href}: package {} location {:?} leaves the repository",
                        p.name, p.href
                    ));
                    continue;
                }
                let path = repo.join(&p.href);
                let file = match std::fs::File::open(&path) {
                    Ok(f) => f,
                    Err(e) => {
                        problems.push(format!("{}: cannot open: {e}", p.href));
                        continue;
                    }
                };
                match sha256_and_len(file) {
                    Ok((sum, len)) => {
                        let mut ok = true;
                        if len != p.size {
                            problems.push(format!(
                                "{}: size {len} differs from the metadata ({})",
                                p.href, p.size
                            ));
                            ok = false;
                        }
                        if sum != p.checksum {
                            problems.push(format!("{}: sha256 differs from the metadata", p.href));
                            ok = false;
                        }
                        if ok {
                            to_sig_check.push(p.href.clone());
                        }
                    }
                    Err(e) => problems.push(format!("{}: cannot read: {e}", p.href)),
                }
            }
            check_signatures(repo, key_path, &to_sig_check, &mut problems)?;
        }
    }
    Ok((revision, packages, problems))
}

/// `rpm -K` every package against a throwaway database holding only the
/// repository key. Unsigned packages and packages signed by another key are
/// problems.
fn check_signatures(
    repo: &Path,
    key: &Path,
    hrefs: &[String],
    problems: &mut Vec<String>,
) -> Result<()> {
    if hrefs.is_empty() {
        return Ok(());
    }
    let verdicts = KeyDb::new(key)?.check(repo, hrefs)?;
    for (href, verdict) in hrefs.iter().zip(verdicts) {
        match verdict {
            SigVerdict::Good => {}
            SigVerdict::Unsigned => problems.push(format!(
                "{href}: package signature check failed: digests OK"
            )),
            SigVerdict::Bad(why) if why.starts_with("rpm -K gave no verdict") => {
                problems.push(format!("{href}: {why}"))
            }
            SigVerdict::Bad(why) => {
                problems.push(format!("{href}: package signature check failed: {why}"))
            }
        }
    }
    Ok(())
}
