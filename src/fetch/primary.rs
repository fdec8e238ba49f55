//! `primary.xml` (gzip, xz, zstd or plain): the packages a repository holds,
//! read as a stream so a 100 MB primary never sits in memory whole.
//!
//! Metadata comes from mirrors we do not control, and a correct checksum in
//! repomd.xml says nothing about what a file expands to: a 46 MB gzip can
//! hold 10 GiB. So reading is bounded three ways, each failing with one
//! line: the decompressed size ([`ENV_MAX_METADATA`], default
//! [`DEFAULT_MAX_METADATA`]), the length of any single XML node (text, tag
//! or attribute list; [`MAX_XML_NODE`]), and the number of packages kept
//! ([`MAX_PACKAGES`]). Memory is then bounded by the node limit and the kept
//! packages, whatever the input.

use super::digest::Checksum;
use super::repomd::{attr, one_line};
use crate::util::validate;
use anyhow::{anyhow, bail, Context, Result};
use quick_xml::events::Event;
use quick_xml::Reader;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read};

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

/// Decompressed bytes one metadata file may expand to (`KHOTFIX_METADATA_MAX_BYTES`).
pub const ENV_MAX_METADATA: &str = "KHOTFIX_METADATA_MAX_BYTES";
/// 2 GiB: ten times the largest primary.xml of a real distro repository.
pub const DEFAULT_MAX_METADATA: u64 = 2 << 30;
/// Longest single XML node (text, or a tag with its attributes): 8 MiB. The
/// longest in real primary.xml files are package descriptions, a few KiB.
pub const MAX_XML_NODE: u64 = 8 << 20;
/// Most packages kept from one primary.xml (only kernel packages are kept;
/// a vendor repository with every kernel ever built has tens of thousands).
pub const MAX_PACKAGES: usize = 200_000;

/// The decompressed-size limit: [`ENV_MAX_METADATA`] or the default.
pub fn max_metadata_bytes() -> Result<u64> {
    match std::env::var(ENV_MAX_METADATA) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                anyhow!("{ENV_MAX_METADATA}={v:?}: expected a positive number of bytes")
            }),
        _ => Ok(DEFAULT_MAX_METADATA),
    }
}

/// A `BufRead` that refuses to deliver more than `max_total` bytes in all,
/// or more than `max_node` bytes between two calls of [`Bounded::mark`] (the
/// XML loops mark after every event, so this bounds one node, which is what
/// the XML reader buffers).
pub struct Bounded<R> {
    inner: R,
    total: u64,
    since_mark: u64,
    max_total: u64,
    max_node: u64,
}

impl<R: BufRead> Bounded<R> {
    pub fn new(inner: R, max_total: u64, max_node: u64) -> Self {
        Bounded {
            inner,
            total: 0,
            since_mark: 0,
            max_total,
            max_node,
        }
    }

    /// A node boundary: the next node may be `max_node` bytes again.
    pub fn mark(&mut self) {
        self.since_mark = 0;
    }

    fn check(&self) -> std::io::Result<()> {
        if self.total > self.max_total {
            return Err(std::io::Error::other(format!(
                "decompressed metadata exceeds {} bytes (a decompression bomb? set {ENV_MAX_METADATA} to allow more)",
                self.max_total
            )));
        }
        if self.since_mark > self.max_node {
            return Err(std::io::Error::other(format!(
                "an XML node is longer than {} bytes",
                self.max_node
            )));
        }
        Ok(())
    }
}

impl<R: BufRead> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = {
            let avail = self.fill_buf()?;
            let n = avail.len().min(buf.len());
            buf[..n].copy_from_slice(&avail[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Bounded<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.check()?;
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.total = self.total.saturating_add(amt as u64);
        self.since_mark = self.since_mark.saturating_add(amt as u64);
        self.inner.consume(amt);
    }
}

/// Memory the xz decoder may use (xz -9 needs 65 MiB to decompress).
const XZ_MEMLIMIT: u64 = 256 << 20;

/// Open a possibly compressed metadata file, recognising the format by its
/// magic bytes (gzip, xz, zstd; anything else is read as plain XML).
pub fn decompress<'a>(input: impl Read + 'a) -> Result<Box<dyn BufRead + 'a>> {
    let mut input = BufReader::with_capacity(256 * 1024, input);
    let head = input.fill_buf().context("reading")?.to_vec();
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::with_capacity(
            256 * 1024,
            flate2::bufread::MultiGzDecoder::new(input),
        ))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        // Bounded decoder memory: a header asking for a huge dictionary
        // fails instead of allocating it.
        let stream =
            liblzma::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, liblzma::stream::CONCATENATED)
                .context("starting xz")?;
        Box::new(BufReader::with_capacity(
            256 * 1024,
            liblzma::bufread::XzDecoder::new_stream(input, stream),
        ))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(BufReader::with_capacity(
            256 * 1024,
            zstd::stream::read::Decoder::with_buffer(input).context("starting zstd")?,
        ))
    } else if head.starts_with(b"BZh") {
        bail!("bzip2-compressed metadata is not supported (gzip, xz and zstd are)")
    } else {
        Box::new(input)
    })
}

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
    let max = max_metadata_bytes()?;
    let reader = decompress(input)
        .map_err(|e| anyhow!("cannot read {url}: {}", one_line(&format!("{e:#}"))))?;
    parse_xml(Bounded::new(reader, max, MAX_XML_NODE), &keep).map_err(|e| {
        anyhow!(
            "malformed primary metadata at {url}: {}",
            one_line(&format!("{e:#}"))
        )
    })
}

#[derive(Default)]
struct Partial {
    name: Option<String>,
    arch: Option<String>,
    epoch: String,
    version: Option<String>,
    release: Option<String>,
    sum_type: Option<String>,
    sum: Option<String>,
    size: Option<u64>,
    location: Option<String>,
}

fn parse_xml<R: BufRead>(
    input: Bounded<R>,
    keep: &dyn Fn(&str, &str) -> bool,
) -> Result<Vec<Package>> {
    let mut r = Reader::from_reader(input);
    r.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut saw_root = false;
    let mut pkg: Option<Partial> = None;
    // Direct child of <package> whose text we want.
    let mut field: Option<Vec<u8>> = None;
    loop {
        r.get_mut().mark();
        let ev = r
            .read_event_into(&mut buf)
            .map_err(|e| anyhow!("at byte {}: {e}", r.buffer_position()))?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                let local = e.local_name().as_ref().to_vec();
                if depth == 0 {
                    if local != b"metadata" {
                        bail!(
                            "root element is <{}>, not <metadata>",
                            String::from_utf8_lossy(&local)
                        );
                    }
                    saw_root = true;
                }
                if depth == 1 && local == b"package" {
                    pkg = Some(Partial::default());
                } else if depth == 2 {
                    if let Some(p) = pkg.as_mut() {
                        match local.as_slice() {
                            b"version" => {
                                p.epoch = attr(e, b"epoch")?.unwrap_or_else(|| "0".into());
                                p.version = attr(e, b"ver")?;
                                p.release = attr(e, b"rel")?;
                            }
                            b"checksum" => p.sum_type = attr(e, b"type")?,
                            b"size" => {
                                if let Some(s) = attr(e, b"package")? {
                                    p.size = Some(
                                        s.parse()
                                            .map_err(|_| anyhow!("bad <size package={s:?}>"))?,
                                    );
                                }
                            }
                            b"location" => {
                                if attr(e, b"base")?.is_some() {
                                    // xml:base would send us to another server; not followed.
                                    p.location = Some("\0xml:base".into());
                                } else {
                                    p.location = attr(e, b"href")?;
                                }
                            }
                            _ => {}
                        }
                        field = (!empty
                            && matches!(local.as_slice(), b"name" | b"arch" | b"checksum"))
                        .then_some(local);
                    }
                }
                if !empty {
                    depth += 1;
                }
            }
            Event::Text(t) => {
                if let (Some(f), Some(p)) = (&field, pkg.as_mut()) {
                    let text = t.unescape()?.into_owned();
                    match f.as_slice() {
                        b"name" => p.name = Some(text),
                        b"arch" => p.arch = Some(text),
                        b"checksum" => p.sum = Some(text),
                        _ => {}
                    }
                }
            }
            Event::End(e) => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| anyhow!("unbalanced end tag"))?;
                field = None;
                if depth == 1 && e.local_name().as_ref() == b"package" {
                    if let Some(p) = pkg.take() {
                        if let Some(done) = finish(p, keep)? {
                            if out.len() >= MAX_PACKAGES {
                                bail!("more than {MAX_PACKAGES} kernel packages in one repository");
                            }
                            out.push(done);
                        }
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !saw_root {
        bail!("no <metadata> element");
    }
    if depth != 0 {
        bail!("unexpected end of file ({depth} element(s) still open)");
    }
    Ok(out)
}

fn finish(p: Partial, keep: &dyn Fn(&str, &str) -> bool) -> Result<Option<Package>> {
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
    let location = p.location.ok_or_else(|| what("<location href>"))?;
    if location == "\0xml:base" {
        bail!("package {name}-{version}-{release}.{arch} has a <location xml:base>, which khotfix does not follow: refused");
    }
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
        p.sum_type.as_deref().ok_or_else(|| what("checksum type"))?,
        p.sum.as_deref().ok_or_else(|| what("<checksum>"))?,
    )
    .with_context(|| format!("package {name}-{version}-{release}.{arch}"))?;
    Ok(Some(Package {
        name,
        arch,
        epoch: p.epoch,
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
