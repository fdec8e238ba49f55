//! `repodata/repomd.xml`: where the primary metadata is and its checksum.

use super::digest::Checksum;
use anyhow::{anyhow, bail, Result};
use quick_xml::events::Event;
use quick_xml::Reader;

/// The `<data type="primary">` entry of repomd.xml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryRef {
    /// Relative location, e.g. `repodata/<hash>-primary.xml.gz`.
    pub href: String,
    /// Checksum of the (compressed) file.
    pub checksum: Checksum,
    pub size: Option<u64>,
}

/// Parse repomd.xml; `url` names the file in errors.
pub fn parse(url: &str, xml: &[u8]) -> Result<PrimaryRef> {
    parse_inner(xml).map_err(|e| {
        anyhow!(
            "malformed repomd.xml at {url}: {}",
            one_line(&format!("{e:#}"))
        )
    })
}

pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn parse_inner(xml: &[u8]) -> Result<PrimaryRef> {
    let mut r = Reader::from_reader(xml);
    r.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut saw_root = false;
    let mut in_primary = false;
    let mut field: Option<&'static str> = None;
    let (mut href, mut sum_type, mut sum, mut size) = (None, None, None, None);
    let mut found = None;
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
                match name {
                    b"data" => {
                        let ty = attr(e, b"type")?;
                        in_primary = ty.as_deref() == Some("primary");
                    }
                    b"location" if in_primary => href = attr(e, b"href")?,
                    b"checksum" if in_primary => {
                        sum_type = attr(e, b"type")?;
                        field = Some("checksum");
                    }
                    b"size" if in_primary => field = Some("size"),
                    _ => field = None,
                }
                if matches!(ev, Event::Empty(_)) {
                    field = None;
                }
            }
            Event::Text(t) => {
                let text = t.unescape()?.to_string();
                match field {
                    Some("checksum") => sum = Some(text),
                    Some("size") => {
                        size = Some(
                            text.parse::<u64>()
                                .map_err(|_| anyhow!("bad <size> {text:?}"))?,
                        )
                    }
                    _ => {}
                }
            }
            Event::End(e) => {
                field = None;
                if e.local_name().as_ref() == b"data" && in_primary {
                    in_primary = false;
                    let href = href
                        .take()
                        .ok_or_else(|| anyhow!("primary entry has no <location href>"))?;
                    let kind = sum_type
                        .take()
                        .ok_or_else(|| anyhow!("primary entry's <checksum> has no type"))?;
                    let value = sum
                        .take()
                        .ok_or_else(|| anyhow!("primary entry has no <checksum>"))?;
                    found = Some(PrimaryRef {
                        href,
                        checksum: Checksum::parse(&kind, &value)?,
                        size: size.take(),
                    });
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
    found.ok_or_else(|| anyhow!("no <data type=\"primary\"> entry"))
}

pub(crate) fn attr(e: &quick_xml::events::BytesStart, key: &[u8]) -> Result<Option<String>> {
    for a in e.attributes() {
        let a = a?;
        if a.key.local_name().as_ref() == key {
            return Ok(Some(a.unescape_value()?.to_string()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm">
  <revision>1</revision>
  <data type="filelists"><checksum type="sha256">1111111111111111111111111111111111111111111111111111111111111111</checksum><location href="repodata/f.xml.gz"/></data>
  <data type="primary">
    <checksum type="sha256">aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa</checksum>
    <open-checksum type="sha256">bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb</open-checksum>
    <location href="repodata/x-primary.xml.zst"/>
    <size>123</size>
    <open-size>456</open-size>
  </data>
</repomd>"#;

    #[test]
    fn finds_primary() {
        let p = parse("u", GOOD.as_bytes()).unwrap();
        assert_eq!(p.href, "repodata/x-primary.xml.zst");
        assert_eq!(p.checksum.hex, "a".repeat(64));
        assert_eq!(p.size, Some(123));
    }

    #[test]
    fn malformed_is_one_line_naming_url() {
        let e = parse("http://h/repodata/repomd.xml", &GOOD.as_bytes()[..200])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("malformed repomd.xml at http://h/repodata/repomd.xml"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        let e = parse("u", b"<html>nope</html>").unwrap_err().to_string();
        assert!(e.contains("not <repomd>"), "{e}");
    }
}
