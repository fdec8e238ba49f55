//! A mirror's `repodata/repomd.xml`: where the primary metadata is and its
//! checksum (read by the shared [`crate::repodata::repomd`] reader).

use super::digest::Checksum;
use crate::repodata::{self, one_line};
use anyhow::{anyhow, Result};

/// The `<data type="primary">` entry of repomd.xml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryRef {
    /// Relative location, e.g. `repodata/<hash>-primary.xml.gz`.
    pub href: String,
    /// Checksum of the (compressed) file.
    pub checksum: Checksum,
    pub size: Option<u64>,
}

/// Parse repomd.xml and find its primary entry; `url` names the file in
/// errors.
pub fn parse(url: &str, xml: &[u8]) -> Result<PrimaryRef> {
    primary_ref(xml).map_err(|e| {
        anyhow!(
            "malformed repomd.xml at {url}: {}",
            one_line(&format!("{e:#}"))
        )
    })
}

fn primary_ref(xml: &[u8]) -> Result<PrimaryRef> {
    let md = repodata::repomd::parse(xml)?;
    let p = md
        .find("primary")
        .ok_or_else(|| anyhow!("no <data type=\"primary\"> entry"))?;
    let href = p
        .href
        .clone()
        .ok_or_else(|| anyhow!("primary entry has no <location href>"))?;
    let sum = p
        .checksum
        .as_ref()
        .ok_or_else(|| anyhow!("primary entry has no <checksum>"))?;
    let kind = sum
        .kind
        .as_deref()
        .ok_or_else(|| anyhow!("primary entry's <checksum> has no type"))?;
    Ok(PrimaryRef {
        href,
        checksum: Checksum::parse(kind, &sum.value)?,
        size: p.size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = crate::repodata::repomd::SAMPLE;

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
