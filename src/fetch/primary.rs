//! The kernel packages of a mirror's `primary.xml` (gzip, xz, zstd or
//! plain), validated for fetching.
//!
//! The XML is read by the shared reader ([`crate::repodata::primary`]),
//! which bounds the decompressed size and the length of one node; this
//! module adds fetch's policy: only wanted packages are kept, at most
//! [`MAX_PACKAGES`] of them (memory is then bounded whatever the input), and
//! a package whose location or fields are unsafe for the cache is refused.

use super::digest::Checksum;
use crate::repodata::{self, one_line, primary::Entry};
use crate::util::validate;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Read;

/// One package entry, as much of it as fetching needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub arch: String,
    pub epoch: String,
    pub version: String,
    pub release: String,
    pub checksum: Checksum,
    /// Size of the package file in bytes.
    pub size: Option<u64>,
    /// Location relative to the repository base (validated: relative, no `..`).
    pub location: String,
}

impl Package {
    /// `version-release`, e.g. `3.10.0-1062.9.1.el7`.
    pub fn version_release(&self) -> String {
        format!("{}-{}", self.version, self.release)
    }

    /// The file name part of the location.
    pub fn file_name(&self) -> &str {
        self.location.rsplit('/').next().unwrap_or(&self.location)
    }
}

/// Most packages kept from one primary.xml (only kernel packages are kept;
/// a vendor repository with every kernel ever built has tens of thousands).
pub const MAX_PACKAGES: usize = 200_000;

/// Validate a package location from metadata: relative, inside the
/// repository, with a file name fit for the cache.
pub fn check_location(href: &str) -> Result<()> {
    validate::relative_path("package location", href).map_err(|e| anyhow!("{e}: refused"))?;
    if href.contains(['?', '#', '\\']) || href.contains("://") {
        bail!("package location {href:?} is not a plain relative path: refused");
    }
    let name = href.rsplit('/').next().unwrap_or(href);
    super::cache::check_file_name(name)
        .map_err(|e| anyhow!("package location {href:?}: {e}: refused"))
}

/// Parse primary.xml from `input` (compressed or not), keeping packages for
/// which `keep(name, arch)` is true. `url` names the file in errors.
pub fn parse(
    url: &str,
    input: impl Read,
    keep: impl Fn(&str, &str) -> bool,
) -> Result<Vec<Package>> {
    let reader = repodata::decompress(input)
        .map_err(|e| anyhow!("cannot read {url}: {}", one_line(&format!("{e:#}"))))?;
    let mut out = Vec::new();
    repodata::primary::read(reader, |entry| {
        if let Some(done) = finish(entry, &keep)? {
            if out.len() >= MAX_PACKAGES {
                bail!("more than {MAX_PACKAGES} kernel packages in one repository");
            }
            out.push(done);
        }
        Ok(())
    })
    .map_err(|e| {
        anyhow!(
            "malformed primary metadata at {url}: {}",
            one_line(&format!("{e:#}"))
        )
    })?;
    Ok(out)
}

/// The package `p` as fetching needs it, if `keep` wants it: every field
/// present and validated, the location safe for the cache.
fn finish(p: Entry, keep: &dyn Fn(&str, &str) -> bool) -> Result<Option<Package>> {
    let name = p.name.ok_or_else(|| anyhow!("a <package> has no <name>"))?;
    let arch = p
        .arch
        .ok_or_else(|| anyhow!("package {name} has no <arch>"))?;
    if !keep(&name, &arch) {
        return Ok(None);
    }
    let what = |f: &str| anyhow!("package {name}.{arch} has no {f}");
    let version = p.version.ok_or_else(|| what("version"))?;
    let release = p.release.ok_or_else(|| what("release"))?;
    if p.location_base {
        // xml:base would send us to another server; not followed.
        bail!("package {name}-{version}-{release}.{arch} has a <location xml:base>, which khotfix does not follow: refused");
    }
    let location = p.location.ok_or_else(|| what("<location href>"))?;
    check_location(&location)
        .with_context(|| format!("package {name}-{version}-{release}.{arch}"))?;
    for (f, v) in [
        ("name", &name),
        ("arch", &arch),
        ("version", &version),
        ("release", &release),
    ] {
        validate::package_token(f, v).map_err(|e| anyhow!("package {name}: {e}"))?;
    }
    let checksum = Checksum::parse(
        p.checksum_type
            .as_deref()
            .ok_or_else(|| what("checksum type"))?,
        p.checksum.as_deref().ok_or_else(|| what("<checksum>"))?,
    )
    .with_context(|| format!("package {name}-{version}-{release}.{arch}"))?;
    Ok(Some(Package {
        name,
        arch,
        epoch: p.epoch.unwrap_or_else(|| "0".into()),
        version,
        release,
        checksum,
        size: p.size,
        location,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(location: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="2">
<package type="rpm">
  <name>kernel-devel</name>
  <arch>x86_64</arch>
  <version epoch="0" ver="5.10.134" rel="18.al8"/>
  <checksum type="sha256" pkgid="YES">{}</checksum>
  <summary>x</summary>
  <size package="1234" installed="1" archive="1"/>
  <location href="{location}"/>
  <format><rpm:provides><rpm:entry name="kernel-devel"/></rpm:provides><file>/x/name</file></format>
</package>
<package type="rpm"><name>bash</name><arch>x86_64</arch><version epoch="0" ver="5" rel="1"/><checksum type="sha256">{}</checksum><location href="Packages/bash.rpm"/></package>
</metadata>"#,
            "c".repeat(64),
            "d".repeat(64)
        )
    }

    #[test]
    fn keeps_wanted_packages() {
        let x = doc("Packages/kernel-devel-5.10.134-18.al8.x86_64.rpm");
        let v = parse("u", x.as_bytes(), |n, _| n.starts_with("kernel")).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].version_release(), "5.10.134-18.al8");
        assert_eq!(v[0].size, Some(1234));
        assert_eq!(v[0].file_name(), "kernel-devel-5.10.134-18.al8.x86_64.rpm");
    }

    #[test]
    fn compressed_forms() {
        use std::io::Write;
        let x = doc("Packages/k.rpm");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(x.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(x.as_bytes(), 3).unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(x.as_bytes()).unwrap();
        let xz = xz.finish().unwrap();
        for data in [gz, zst, xz] {
            assert_eq!(parse("u", data.as_slice(), |_, _| true).unwrap().len(), 2);
        }
    }

    #[test]
    fn refuses_traversal_and_truncation() {
        let x = doc("../../etc/kernel-devel.rpm");
        let e = parse("http://h/p.xml", x.as_bytes(), |n, _| {
            n.starts_with("kernel")
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("'..'") && e.contains("http://h/p.xml"), "{e}");
        let x = doc("/abs/kernel.rpm");
        assert!(parse("u", x.as_bytes(), |_, _| true).is_err());
        let x = doc("Packages/k.rpm");
        let e = parse("http://h/p.xml", &x.as_bytes()[..300], |_, _| true)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("malformed primary metadata at http://h/p.xml"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }
}
