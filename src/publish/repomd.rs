//! repomd.xml: writing it, reading it back (through the shared reader in
//! [`crate::repodata`]), and the compressed data files it points to
//! (content-addressed names, as `createrepo_c --unique-md-filenames`).

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::Path;

/// Compression of the data files. gzip is what EL7's yum reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    Gz,
    Zstd,
}

impl Compression {
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::Gz => "gz",
            Compression::Zstd => "zst",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "gz" | "gzip" => Ok(Compression::Gz),
            "zstd" | "zst" => Ok(Compression::Zstd),
            _ => bail!("unknown compression {s:?}; use gz or zstd"),
        }
    }
}

/// One `<data>` record of repomd.xml.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DataRecord {
    pub kind: String,
    /// Relative to the repository root: `repodata/<sha256>-primary.xml.gz`.
    pub href: String,
    pub checksum: String,
    pub open_checksum: String,
    pub size: u64,
    pub open_size: u64,
    pub timestamp: u64,
}

/// Hashes (with libcrypto, the fastest sha256 here) and counts what it
/// passes on.
struct HashCount<W> {
    inner: W,
    hash: crate::util::libcrypto::Hasher,
    n: u64,
}

impl<W: Write> Write for HashCount<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]).map_err(std::io::Error::other)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A data file being written: a temporary file in the generation directory
/// that hashes and counts what goes through it, then gets its
/// content-addressed name (so a new file never replaces one an old
/// repomd.xml still points to).
pub struct DataFileWriter {
    tmp: tempfile::NamedTempFile,
    sink: HashCount<std::io::BufWriter<std::fs::File>>,
}

impl DataFileWriter {
    pub fn new(dir: &Path) -> Result<Self> {
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        let file = tmp
            .as_file()
            .try_clone()
            .context("duplicating a file handle")?;
        Ok(DataFileWriter {
            tmp,
            sink: HashCount {
                inner: std::io::BufWriter::with_capacity(1 << 16, file),
                hash: crate::util::libcrypto::Hasher::new(crate::util::libcrypto::Digest::Sha256)?,
                n: 0,
            },
        })
    }

    /// Where the compressed bytes go.
    pub fn sink(&mut self) -> &mut dyn Write {
        &mut self.sink
    }

    /// Flush and name the file `<sha256>-<kind>.xml.<suffix>`; the caller
    /// gives what it hashed of the uncompressed content. Not fsynced here:
    /// the generation's files are synced together before it is committed
    /// (`sign_and_swap`).
    pub fn finish(
        self,
        kind: &str,
        comp: Compression,
        open: (String, u64),
        timestamp: u64,
    ) -> Result<DataRecord> {
        let DataFileWriter { tmp, sink } = self;
        let HashCount { inner, hash, n } = sink;
        inner.into_inner().map_err(|e| e.into_error())?;
        let checksum = hex::encode(hash.finish()?);
        super::make_public(tmp.as_file())?;
        let dir = tmp
            .path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let name = format!("{checksum}-{kind}.xml.{}", comp.suffix());
        tmp.persist(dir.join(&name))
            .map_err(|e| e.error)
            .with_context(|| format!("renaming into {}", dir.join(&name).display()))?;
        Ok(DataRecord {
            kind: kind.to_string(),
            href: format!("repodata/{name}"),
            checksum,
            open_checksum: open.0,
            size: n,
            open_size: open.1,
            timestamp,
        })
    }
}

/// Compress `parts` (concatenated) as one stream into
/// `dir/<sha256>-<kind>.xml.<ext>` (not fsynced, like
/// [`DataFileWriter::finish`]) and return its record. (gzip
/// files of a publish go through [`super::gzchunks`] instead.)
pub fn write_data_file(
    dir: &Path,
    kind: &str,
    parts: &[&[u8]],
    comp: Compression,
    timestamp: u64,
) -> Result<DataRecord> {
    let mut open_hash = Sha256::new();
    let mut open_size = 0u64;
    for p in parts {
        open_hash.update(p);
        open_size += p.len() as u64;
    }
    let mut w = DataFileWriter::new(dir)?;
    match comp {
        Compression::Gz => {
            let mut enc = flate2::write::GzEncoder::new(w.sink(), flate2::Compression::best());
            for p in parts {
                enc.write_all(p)?;
            }
            enc.finish()?;
        }
        Compression::Zstd => {
            let mut enc = zstd::Encoder::new(w.sink(), 3)?;
            for p in parts {
                enc.write_all(p)?;
            }
            enc.finish()?;
        }
    }
    let open = (hex::encode(open_hash.finalize()), open_size);
    w.finish(kind, comp, open, timestamp)
}

/// Render repomd.xml.
pub fn render(revision: u64, records: &[DataRecord]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<repomd xmlns=\"http://linux.duke.edu/metadata/repo\" xmlns:rpm=\"http://linux.duke.edu/metadata/rpm\">\n",
    );
    let _ = writeln!(s, "  <revision>{revision}</revision>");
    for r in records {
        let _ = write!(
            s,
            "  <data type=\"{}\">\n    <checksum type=\"sha256\">{}</checksum>\n    <open-checksum type=\"sha256\">{}</open-checksum>\n    <location href=\"",
            r.kind, r.checksum, r.open_checksum
        );
        super::repodata::escape_into(&mut s, &r.href);
        let _ = write!(
            s,
            "\"/>\n    <timestamp>{}</timestamp>\n    <size>{}</size>\n    <open-size>{}</open-size>\n  </data>\n",
            r.timestamp, r.size, r.open_size
        );
    }
    s.push_str("</repomd>\n");
    s
}

/// Read repomd.xml back (with the shared reader): the revision and every
/// data record. Only sha256 checksums are accepted (khotfix and
/// createrepo_c's default); anything else is reported as unreadable. Errors
/// are one line.
pub fn parse(xml: &[u8]) -> Result<(u64, Vec<DataRecord>)> {
    let md = crate::repodata::repomd::parse(xml)?;
    let records = md
        .data
        .into_iter()
        .map(DataRecord::from_read)
        .collect::<Result<_>>()?;
    Ok((md.revision, records))
}

impl DataRecord {
    /// The record as read: missing fields empty or 0, checksums sha256.
    fn from_read(d: crate::repodata::repomd::Data) -> Result<DataRecord> {
        let sha256 = |what: &str, sum: Option<crate::repodata::repomd::Sum>| -> Result<String> {
            let Some(sum) = sum else {
                return Ok(String::new());
            };
            match sum.kind.as_deref() {
                None | Some("sha256") => Ok(sum.value),
                Some(t) => bail!("{what} type {t:?} is not supported (only sha256)"),
            }
        };
        Ok(DataRecord {
            checksum: sha256("checksum", d.checksum)?,
            open_checksum: sha256("open-checksum", d.open_checksum)?,
            kind: d.kind,
            href: d.href.unwrap_or_default(),
            size: d.size.unwrap_or(0),
            open_size: d.open_size.unwrap_or(0),
            timestamp: d.timestamp.unwrap_or(0),
        })
    }
}

/// Open a data file for reading, decompressing by its extension.
pub fn open_decompressed(path: &Path) -> Result<Box<dyn Read>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let f = std::io::BufReader::new(f);
    let name = path.to_string_lossy();
    if name.ends_with(".gz") {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(f)))
    } else if name.ends_with(".zst") {
        Ok(Box::new(zstd::Decoder::with_buffer(f)?))
    } else if name.ends_with(".xml") {
        Ok(Box::new(f))
    } else {
        bail!("{}: unknown compression", path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let d = tempfile::tempdir().unwrap();
        let rec =
            write_data_file(d.path(), "primary", &[b"<a/>", b"\n"], Compression::Gz, 7).unwrap();
        assert!(rec.href.starts_with("repodata/") && rec.href.ends_with("-primary.xml.gz"));
        assert_eq!(rec.open_size, 5);
        let xml = render(42, std::slice::from_ref(&rec));
        let (rev, recs) = parse(xml.as_bytes()).unwrap();
        assert_eq!(rev, 42);
        assert_eq!(recs, vec![rec.clone()]);
        let name = rec.href.strip_prefix("repodata/").unwrap();
        let mut s = String::new();
        open_decompressed(&d.path().join(name))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "<a/>\n");
    }
}
