//! `repodata/repomd.xml`: the revision and, per data file (primary,
//! filelists, other…), where it is and its checksums and sizes.

use super::{attr, one_line};
use anyhow::{anyhow, bail, Result};
use quick_xml::events::Event;
use quick_xml::Reader;

/// repomd.xml as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repomd {
    /// `<revision>`; 0 when absent or not a number (createrepo_c lets it be
    /// any string).
    pub revision: u64,
    pub data: Vec<Data>,
}

/// One `<data type=…>` entry, every field as the file has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Data {
    /// `type`: `primary`, `filelists`, `other`, …
    pub kind: String,
    /// `<location href=>`, relative to the repository root.
    pub href: Option<String>,
    /// `<checksum>` of the file as stored (compressed).
    pub checksum: Option<Sum>,
    /// `<open-checksum>` of the decompressed content.
    pub open_checksum: Option<Sum>,
    pub size: Option<u64>,
    pub open_size: Option<u64>,
    /// `<timestamp>`; `None` when absent or not a number.
    pub timestamp: Option<u64>,
}

/// A checksum element: `type` attribute and text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sum {
    pub kind: Option<String>,
    pub value: String,
}

impl Repomd {
    /// The first entry of `kind` (`primary`, …).
    pub fn find(&self, kind: &str) -> Option<&Data> {
        self.data.iter().find(|d| d.kind == kind)
    }
}

/// Parse repomd.xml. Errors are one line (XML excerpts in them can hold
/// newlines) and do not name the file; the caller does.
pub fn parse(xml: &[u8]) -> Result<Repomd> {
    parse_inner(xml).map_err(|e| anyhow!(one_line(&format!("{e:#}"))))
}

/// The `<data>` child whose text is being read.
#[derive(Clone, Copy)]
enum Field {
    Checksum,
    OpenChecksum,
    Size,
    OpenSize,
    Timestamp,
}

fn parse_inner(xml: &[u8]) -> Result<Repomd> {
    let mut r = Reader::from_reader(xml);
    r.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut saw_root = false;
    let mut closed_root = false;
    let mut out = Repomd::default();
    let mut cur: Option<Data> = None;
    let mut in_revision = false;
    let mut field: Option<Field> = None;
    loop {
        let ev = r.read_event_into(&mut buf)?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = e.local_name();
                let name = name.as_ref();
                if !saw_root {
                    if name != b"repomd" {
                        bail!(
                            "root element is <{}>, not <repomd>",
                            String::from_utf8_lossy(name)
                        );
                    }
                    saw_root = true;
                }
                in_revision = cur.is_none() && name == b"revision";
                field = None;
                match (name, cur.as_mut()) {
                    (b"data", _) => {
                        let kind =
                            attr(e, b"type")?.ok_or_else(|| anyhow!("<data> without type"))?;
                        cur = Some(Data {
                            kind,
                            ..Data::default()
                        });
                    }
                    (b"location", Some(d)) => d.href = attr(e, b"href")?,
                    (b"checksum", Some(d)) => {
                        d.checksum = Some(Sum {
                            kind: attr(e, b"type")?,
                            value: String::new(),
                        });
                        field = Some(Field::Checksum);
                    }
                    (b"open-checksum", Some(d)) => {
                        d.open_checksum = Some(Sum {
                            kind: attr(e, b"type")?,
                            value: String::new(),
                        });
                        field = Some(Field::OpenChecksum);
                    }
                    (b"size", Some(_)) => field = Some(Field::Size),
                    (b"open-size", Some(_)) => field = Some(Field::OpenSize),
                    (b"timestamp", Some(_)) => field = Some(Field::Timestamp),
                    _ => {}
                }
                if matches!(ev, Event::Empty(_)) {
                    field = None;
                    in_revision = false;
                }
            }
            Event::Text(t) => {
                let text = t.unescape()?;
                let text = text.trim();
                if in_revision {
                    out.revision = text.parse().unwrap_or(0);
                }
                if let (Some(d), Some(f)) = (cur.as_mut(), field) {
                    let number = |what: &str| {
                        text.parse::<u64>()
                            .map_err(|_| anyhow!("bad <{what}> {text:?}"))
                    };
                    match f {
                        Field::Checksum => set_sum(&mut d.checksum, text),
                        Field::OpenChecksum => set_sum(&mut d.open_checksum, text),
                        Field::Size => d.size = Some(number("size")?),
                        Field::OpenSize => d.open_size = Some(number("open-size")?),
                        Field::Timestamp => d.timestamp = text.parse().ok(),
                    }
                }
            }
            Event::End(e) => {
                field = None;
                in_revision = false;
                match e.local_name().as_ref() {
                    b"data" => out.data.extend(cur.take()),
                    b"repomd" => closed_root = true,
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !saw_root {
        bail!("no <repomd> element");
    }
    if !closed_root {
        bail!("unexpected end of file (no </repomd>)");
    }
    Ok(out)
}

fn set_sum(sum: &mut Option<Sum>, text: &str) {
    if let Some(s) = sum.as_mut() {
        s.value = text.to_string();
    }
}

/// A createrepo_c-style repomd.xml for tests of its readers.
#[cfg(test)]
pub(crate) const SAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm">
  <revision>17</revision>
  <data type="filelists"><checksum type="sha256">1111111111111111111111111111111111111111111111111111111111111111</checksum><location href="repodata/f.xml.gz"/></data>
  <data type="primary">
    <checksum type="sha256">aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa</checksum>
    <open-checksum type="sha256">bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb</open-checksum>
    <location href="repodata/x-primary.xml.zst"/>
    <timestamp>99</timestamp>
    <size>123</size>
    <open-size>456</open-size>
  </data>
</repomd>"#;

#[cfg(test)]
mod tests {
    use super::*;
    const GOOD: &str = SAMPLE;

    #[test]
    fn reads_every_entry() {
        let m = parse(GOOD.as_bytes()).unwrap();
        assert_eq!(m.revision, 17);
        assert_eq!(m.data.len(), 2);
        let p = m.find("primary").unwrap();
        assert_eq!(p.href.as_deref(), Some("repodata/x-primary.xml.zst"));
        let sum = p.checksum.as_ref().unwrap();
        assert_eq!(
            (sum.kind.as_deref(), sum.value.as_str()),
            (Some("sha256"), "a".repeat(64).as_str())
        );
        assert_eq!(p.open_checksum.as_ref().unwrap().value, "b".repeat(64));
        assert_eq!(
            (p.size, p.open_size, p.timestamp),
            (Some(123), Some(456), Some(99))
        );
        assert_eq!(m.find("filelists").unwrap().size, None);
    }

    #[test]
    fn errors_are_one_line() {
        let e = parse(&GOOD.as_bytes()[..200]).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        let e = parse(b"<html>nope</html>").unwrap_err().to_string();
        assert!(e.contains("not <repomd>"), "{e}");
        let bad = GOOD.replace("<size>123", "<size>12x3");
        let e = parse(bad.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("bad <size>"), "{e}");
    }
}
