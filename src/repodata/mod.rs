//! rpm-md repository metadata (`repodata/`): the one reader of repomd.xml
//! and primary.xml, shared by `fetch` (mirrors' metadata) and `publish`
//! (reading its own repository back: `repo verify`, duplicate clean-up).
//!
//! There used to be a reader in each; they drifted (one checked the root
//! element, one did not; one bounded memory, one trusted the file). Here
//! they read the same way: streamed, with the decompressed size, the length
//! of one XML node and the root element checked, every error one line. The
//! readers return what the file says, with nothing validated beyond XML
//! syntax and number fields; each caller applies its own policy (fetch
//! refuses unsafe package locations, verify reports them as problems).
//!
//! Metadata comes from mirrors we do not control, and a correct checksum in
//! repomd.xml says nothing about what a file expands to: a 46 MB gzip can
//! hold 10 GiB. So reading is bounded: the decompressed size
//! ([`ENV_MAX_METADATA`], default [`DEFAULT_MAX_METADATA`]) and the length
//! of any single XML node (text, tag or attribute list; [`MAX_XML_NODE`]).
//!
//! The writers stay in `publish` (`publish::repodata`, `publish::repomd`):
//! only publishing writes metadata, byte for byte as createrepo_c does.

pub mod primary;
pub mod repomd;

use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, BufReader, Read};

/// `s` with every run of white space (newlines included) folded to one
/// space: errors quoting XML or a tool's stderr stay one line.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The value of attribute `key` (local name, namespace ignored), unescaped.
pub(crate) fn attr(e: &quick_xml::events::BytesStart, key: &[u8]) -> Result<Option<String>> {
    for a in e.attributes() {
        let a = a?;
        if a.key.local_name().as_ref() == key {
            return Ok(Some(a.unescape_value()?.to_string()));
        }
    }
    Ok(None)
}

/// Decompressed bytes one metadata file may expand to (`KHOTFIX_METADATA_MAX_BYTES`).
pub const ENV_MAX_METADATA: &str = "KHOTFIX_METADATA_MAX_BYTES";
/// 2 GiB: ten times the largest primary.xml of a real distro repository.
pub const DEFAULT_MAX_METADATA: u64 = 2 << 30;
/// Longest single XML node (text, or a tag with its attributes): 8 MiB. The
/// longest in real primary.xml files are package descriptions, a few KiB.
pub const MAX_XML_NODE: u64 = 8 << 20;

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
