//! primary.xml, filelists.xml and other.xml writers, in createrepo_c's layout.
//!
//! Written by hand into a byte buffer (no DOM, no per-node allocation): the
//! output is a flat sequence of elements whose shape is fixed, and this is the
//! hot loop of a full index. The measurements that chose this over the
//! `rpmrepo_metadata` crate are in `benches/publish.sh`'s notes.

use super::rpmmeta::{Dep, FileKind, PackageMeta};
use std::fmt::Write as _;

const NS_COMMON: &str = "http://linux.duke.edu/metadata/common";
const NS_RPM: &str = "http://linux.duke.edu/metadata/rpm";
const NS_FILELISTS: &str = "http://linux.duke.edu/metadata/filelists";
const NS_OTHER: &str = "http://linux.duke.edu/metadata/other";

/// Append `s` escaped for XML text and attribute values. Characters XML 1.0
/// cannot carry at all (C0 controls other than tab/newline/CR) are dropped, as
/// libxml2-based writers do, so a bad header cannot make unparsable metadata.
pub fn escape_into(out: &mut String, s: &str) {
    escape(out, s, true)
}

/// Like [`escape_into`] for element text, where quotes stay literal (as
/// libxml2 writes them; keeps our output byte-identical to createrepo_c's).
pub fn escape_text_into(out: &mut String, s: &str) {
    escape(out, s, false)
}

fn escape(out: &mut String, s: &str, attr: bool) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attr => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
}

fn esc(out: &mut String, s: &str) {
    escape_into(out, s)
}

fn text(out: &mut String, s: &str) {
    escape_text_into(out, s)
}

fn version_elem(out: &mut String, p: &PackageMeta) {
    out.push_str("<version epoch=\"");
    let _ = write!(out, "{}", p.epoch);
    out.push_str("\" ver=\"");
    esc(out, &p.version);
    out.push_str("\" rel=\"");
    esc(out, &p.release);
    out.push_str("\"/>\n");
}

fn deps_elem(out: &mut String, tag: &str, deps: &[Dep], with_pre: bool) {
    if deps.is_empty() {
        return;
    }
    let _ = writeln!(out, "    <rpm:{tag}>");
    for d in deps {
        out.push_str("      <rpm:entry name=\"");
        esc(out, &d.name);
        out.push('"');
        if !d.flags.is_empty() {
            out.push_str(" flags=\"");
            out.push_str(&d.flags);
            out.push('"');
            for (k, v) in [("epoch", &d.epoch), ("ver", &d.ver), ("rel", &d.rel)] {
                if let Some(v) = v {
                    let _ = write!(out, " {k}=\"");
                    esc(out, v);
                    out.push('"');
                }
            }
        }
        if with_pre && d.pre {
            out.push_str(" pre=\"1\"");
        }
        out.push_str("/>\n");
    }
    let _ = writeln!(out, "    </rpm:{tag}>");
}

fn file_elem(out: &mut String, indent: &str, path: &str, kind: FileKind) {
    out.push_str(indent);
    match kind {
        FileKind::File => out.push_str("<file>"),
        FileKind::Dir => out.push_str("<file type=\"dir\">"),
        FileKind::Ghost => out.push_str("<file type=\"ghost\">"),
    }
    text(out, path);
    out.push_str("</file>\n");
}

/// `<tag>text</tag>` elements, one a line, each indented by `indent`.
fn text_elems(out: &mut String, indent: &str, elems: &[(&str, &str)]) {
    for (tag, value) in elems {
        out.push_str(indent);
        out.push('<');
        out.push_str(tag);
        out.push('>');
        text(out, value);
        out.push_str("</");
        out.push_str(tag);
        out.push_str(">\n");
    }
}

pub fn primary_header(n: usize) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metadata xmlns=\"{NS_COMMON}\" xmlns:rpm=\"{NS_RPM}\" packages=\"{n}\">\n"
    )
}
pub const PRIMARY_FOOTER: &str = "</metadata>";

pub fn filelists_header(n: usize) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<filelists xmlns=\"{NS_FILELISTS}\" packages=\"{n}\">\n"
    )
}
pub const FILELISTS_FOOTER: &str = "</filelists>";

pub fn other_header(n: usize) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<otherdata xmlns=\"{NS_OTHER}\" packages=\"{n}\">\n"
    )
}
pub const OTHER_FOOTER: &str = "</otherdata>";

/// One `<package>` of primary.xml.
pub fn primary_package(out: &mut String, p: &PackageMeta) {
    out.push_str("<package type=\"rpm\">\n  <name>");
    text(out, &p.name);
    out.push_str("</name>\n  <arch>");
    text(out, &p.arch);
    out.push_str("</arch>\n  ");
    version_elem(out, p);
    out.push_str("  <checksum type=\"sha256\" pkgid=\"YES\">");
    out.push_str(&p.checksum);
    out.push_str("</checksum>\n");
    text_elems(
        out,
        "  ",
        &[
            ("summary", &p.summary),
            ("description", &p.description),
            ("packager", &p.packager),
            ("url", &p.url),
        ],
    );
    let _ = write!(
        out,
        "  <time file=\"{}\" build=\"{}\"/>\n  <size package=\"{}\" installed=\"{}\" archive=\"{}\"/>\n  <location href=\"",
        p.time_file, p.time_build, p.size_package, p.size_installed, p.size_archive
    );
    esc(out, &p.location);
    out.push_str("\"/>\n  <format>\n");
    text_elems(
        out,
        "    ",
        &[
            ("rpm:license", &p.license),
            ("rpm:vendor", &p.vendor),
            ("rpm:group", &p.group),
            ("rpm:buildhost", &p.buildhost),
            ("rpm:sourcerpm", &p.sourcerpm),
        ],
    );
    let _ = writeln!(
        out,
        "    <rpm:header-range start=\"{}\" end=\"{}\"/>",
        p.header_start, p.header_end
    );
    deps_elem(out, "provides", &p.provides, false);
    deps_elem(out, "requires", &p.requires, true);
    deps_elem(out, "conflicts", &p.conflicts, false);
    deps_elem(out, "obsoletes", &p.obsoletes, false);
    deps_elem(out, "suggests", &p.suggests, false);
    deps_elem(out, "enhances", &p.enhances, false);
    deps_elem(out, "recommends", &p.recommends, false);
    deps_elem(out, "supplements", &p.supplements, false);
    for f in &p.files {
        if super::rpmmeta::is_primary_file(&f.path) {
            file_elem(out, "    ", &f.path, f.kind);
        }
    }
    out.push_str("  </format>\n</package>\n");
}

fn package_open(out: &mut String, p: &PackageMeta) {
    out.push_str("<package pkgid=\"");
    out.push_str(&p.checksum);
    out.push_str("\" name=\"");
    esc(out, &p.name);
    out.push_str("\" arch=\"");
    esc(out, &p.arch);
    out.push_str("\">\n  ");
    version_elem(out, p);
}

/// One `<package>` of filelists.xml: every file, with dir/ghost types.
pub fn filelists_package(out: &mut String, p: &PackageMeta) {
    package_open(out, p);
    for f in &p.files {
        file_elem(out, "  ", &f.path, f.kind);
    }
    out.push_str("</package>\n");
}

/// One `<package>` of other.xml: the changelog.
pub fn other_package(out: &mut String, p: &PackageMeta) {
    package_open(out, p);
    for c in &p.changelogs {
        out.push_str("  <changelog author=\"");
        esc(out, &c.author);
        let _ = write!(out, "\" date=\"{}\">", c.date);
        text(out, &c.text);
        out.push_str("</changelog>\n");
    }
    out.push_str("</package>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let mut s = String::new();
        escape_into(&mut s, "a<b>&\"c\"\u{1}\n");
        assert_eq!(s, "a&lt;b&gt;&amp;&quot;c&quot;\n");
        let mut t = String::new();
        escape_text_into(&mut t, "say \"hi\" & <go>");
        assert_eq!(t, "say \"hi\" &amp; &lt;go&gt;");
    }
}
