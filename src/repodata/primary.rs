//! `primary.xml`: the packages a repository holds, read as a stream (a
//! distribution's primary is 100 MB and more) and handed over one at a time.

use super::{attr, max_metadata_bytes, one_line, Bounded, MAX_XML_NODE};
use anyhow::{anyhow, bail, Result};
use quick_xml::events::Event;
use quick_xml::Reader;
use std::io::BufRead;

/// One `<package>` as written: every field as the file has it, `None` where
/// it is missing. Only the fields khotfix uses are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub name: Option<String>,
    pub arch: Option<String>,
    /// `<version epoch=>`; `None` when the attribute is absent (rpm's 0).
    pub epoch: Option<String>,
    pub version: Option<String>,
    pub release: Option<String>,
    /// `<checksum type=>`, e.g. `sha256`.
    pub checksum_type: Option<String>,
    pub checksum: Option<String>,
    /// `<size package=>`: the size of the package file.
    pub size: Option<u64>,
    /// `<location href=>`.
    pub location: Option<String>,
    /// The location has an `xml:base`, i.e. points at another server.
    pub location_base: bool,
}

/// Read decompressed primary.xml from `input`, calling `each` for every
/// `<package>` in order; an error from `each` stops the reading. Errors are
/// one line.
pub fn read(input: impl BufRead, each: impl FnMut(Entry) -> Result<()>) -> Result<()> {
    let max = max_metadata_bytes()?;
    read_xml(Bounded::new(input, max, MAX_XML_NODE), each)
        .map_err(|e| anyhow!(one_line(&format!("{e:#}"))))
}

fn read_xml<R: BufRead>(
    input: Bounded<R>,
    mut each: impl FnMut(Entry) -> Result<()>,
) -> Result<()> {
    let mut r = Reader::from_reader(input);
    r.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut depth = 0usize;
    let mut saw_root = false;
    let mut pkg: Option<Entry> = None;
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
                    pkg = Some(Entry::default());
                } else if depth == 2 {
                    if let Some(p) = pkg.as_mut() {
                        child(p, e, &local)?;
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
                        b"checksum" => p.checksum = Some(text),
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
                        each(p)?;
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
    Ok(())
}

/// The attributes of a direct child of `<package>`.
fn child(p: &mut Entry, e: &quick_xml::events::BytesStart, local: &[u8]) -> Result<()> {
    match local {
        b"version" => {
            p.epoch = attr(e, b"epoch")?;
            p.version = attr(e, b"ver")?;
            p.release = attr(e, b"rel")?;
        }
        b"checksum" => p.checksum_type = attr(e, b"type")?,
        b"size" => {
            if let Some(s) = attr(e, b"package")? {
                p.size = Some(s.parse().map_err(|_| anyhow!("bad <size package={s:?}>"))?);
            }
        }
        b"location" => {
            p.location_base = attr(e, b"base")?.is_some();
            p.location = attr(e, b"href")?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(xml: &str) -> Result<Vec<Entry>> {
        let mut v = Vec::new();
        read(xml.as_bytes(), |e| {
            v.push(e);
            Ok(())
        })?;
        Ok(v)
    }

    #[test]
    fn reads_entries_as_written() {
        let v = all(
            r#"<metadata xmlns="http://linux.duke.edu/metadata/common" packages="2">
<package type="rpm"><name>a</name><arch>x86_64</arch><version ver="1" rel="2"/>
<checksum type="sha256">ab</checksum><size package="12"/><location href="P/a.rpm"/>
<format><rpm:provides><rpm:entry name="not-the-name"/></rpm:provides></format></package>
<package><name>b</name><location xml:base="http://elsewhere/" href="b.rpm"/></package>
</metadata>"#,
        )
        .unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].name.as_deref(), Some("a"));
        assert_eq!(v[0].epoch, None);
        assert_eq!(v[0].checksum_type.as_deref(), Some("sha256"));
        assert_eq!(v[0].size, Some(12));
        assert_eq!(v[0].location.as_deref(), Some("P/a.rpm"));
        assert!(!v[0].location_base && v[1].location_base);
        assert_eq!(v[1].arch, None);
    }

    #[test]
    fn refuses_other_roots_and_truncation_in_one_line() {
        let e = all("<html>\n<package/></html>").unwrap_err().to_string();
        assert!(e.contains("not <metadata>"), "{e}");
        let e = all("<metadata>\n<package><name>a</name>")
            .unwrap_err()
            .to_string();
        assert!(e.contains("still open") && !e.contains('\n'), "{e}");
    }
}
