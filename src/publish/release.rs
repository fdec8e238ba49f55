//! The `khotfix-release` RPM: trust on first use, done once.
//!
//! The served `khotfix.repo` names `gpgkey=<server>/RPM-GPG-KEY-khotfix`, so
//! a server that is taken over serves its own key and `dnf -y` imports it.
//! The EPEL answer, used here: a small noarch package, signed with the
//! repository key, that holds the part's .repo as
//! `/etc/yum.repos.d/khotfix.repo` and the public key as
//! `/etc/pki/rpm-gpg/RPM-GPG-KEY-khotfix`, with
//! `gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-khotfix`. A host installs it
//! once over a trusted channel (README, "Trusting the repository"); from
//! then on dnf reads the key from the file, whatever the server serves.
//!
//! One per dist part, at a stable name in the repository root:
//! `khotfix-release-latest-<dist>.noarch.rpm` (EPEL's
//! `epel-release-latest-8.noarch.rpm` convention). Version `1`, release
//! `<UTC YYYYMMDDhhmmss>.<dist>` of the publish that last changed its
//! content, so a changed key or URL is an rpm upgrade, and an unchanged one
//! is the same file byte for byte (no new signature every publish).

use super::layout::Part;
use crate::keys::PackageSigner;
use anyhow::{anyhow, Context, Result};
use std::path::Path;

pub const RELEASE_NAME: &str = "khotfix-release";
/// Where the packaged key is installed.
pub const KEY_PATH: &str = "/etc/pki/rpm-gpg/RPM-GPG-KEY-khotfix";
/// Where the packaged .repo is installed.
pub const REPO_PATH: &str = "/etc/yum.repos.d/khotfix.repo";

/// File name of a part's release RPM in the repository root.
pub fn file_name(dist: &str) -> String {
    format!("{RELEASE_NAME}-latest-{dist}.noarch.rpm")
}

/// The packaged .repo: the key from the installed file, never the server.
pub fn packaged_repo_file(part: &Part, base_url: &str) -> String {
    super::layout::client_repo_file(
        part,
        Some(base_url),
        &format!("file://{KEY_PATH}"),
        "# Installed by the khotfix-release package (khotfix publish).\n",
    )
}

/// Write the release RPM of `part` (a dist part) unless the one there
/// already has exactly this content. Returns its path relative to `repo`.
pub fn write_release_rpm(
    repo: &Path,
    part: &Part,
    base_url: &str,
    public_key: &str,
    signer: &PackageSigner,
) -> Result<String> {
    let dist = part
        .dist
        .as_deref()
        .ok_or_else(|| anyhow!("the top level of the repository has no release RPM"))?;
    let name = file_name(dist);
    let path = repo.join(&name);
    let repo_text = packaged_repo_file(part, base_url);
    // Rebuild the existing package from its own build time: equal bytes
    // mean equal content (signatures are deterministic for a given time).
    let existing = std::fs::read(&path).ok();
    if let Some(old) = &existing {
        if let Some(t) = build_time(old) {
            let same = build(dist, &repo_text, public_key, signer, t)?;
            if same == *old {
                return Ok(name);
            }
        }
    }
    let mut t = now();
    if let Some(old_t) = existing.as_deref().and_then(build_time) {
        // A release that sorts after the one it replaces, clock or not.
        t = t.max(old_t + 1);
    }
    let bytes = build(dist, &repo_text, public_key, signer, t)?;
    super::write_if_changed(&path, &bytes)?;
    Ok(name)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn build_time(bytes: &[u8]) -> Option<u64> {
    let md = rpm::PackageMetadata::parse(&mut std::io::Cursor::new(bytes)).ok()?;
    md.get_build_time().ok()
}

/// The signed package bytes, a pure function of the arguments.
fn build(
    dist: &str,
    repo_text: &str,
    public_key: &str,
    signer: &PackageSigner,
    t: u64,
) -> Result<Vec<u8>> {
    let release = format!("{}.{dist}", crate::package::release_timestamp(t)?);
    let ts = rpm::Timestamp(u32::try_from(t).context("time past 2106")?);
    let config = rpm::BuildConfig::default()
        .compression(rpm::CompressionType::Gzip)
        .source_date(ts);
    let mut b = rpm::PackageBuilder::new(
        RELEASE_NAME,
        "1",
        "Apache-2.0",
        "noarch",
        &format!("khotfix repository configuration and key ({dist})"),
    );
    b.using_config(config)
        .release(&release)
        .description(format!(
            "The khotfix hotfix repository for {dist} hosts (/etc/yum.repos.d/khotfix.repo)\n\
             and the public key that signs it ({KEY_PATH}). dnf reads the key from\n\
             that file, not from the server."
        ))
        .group("System Environment/Base")
        .vendor("khotfix")
        .packager("khotfix")
        .build_host("khotfix");
    b.with_file_contents(
        repo_text.as_bytes().to_vec(),
        rpm::FileOptions::new(REPO_PATH)
            .permissions(0o644)
            .config()
            .noreplace(),
    )
    .context("adding the .repo file")?;
    b.with_file_contents(
        public_key.as_bytes().to_vec(),
        rpm::FileOptions::new(KEY_PATH).permissions(0o644),
    )
    .context("adding the key")?;
    let mut pkg = b
        .build()
        .map_err(|e| anyhow!("building {RELEASE_NAME}: {e}"))?;
    crate::package::sigheader::sign_package(&mut pkg, signer, t)?;
    let mut bytes = Vec::new();
    pkg.write(&mut bytes)
        .map_err(|e| anyhow!("serializing {RELEASE_NAME}: {e}"))?;
    Ok(bytes)
}
