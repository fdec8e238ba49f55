//! Reading the repository metadata of one RPM from its header.
//!
//! Only the lead, signature header and main header are parsed
//! (`rpm::PackageMetadata`), never the payload, so indexing is cheap. The
//! fields and filters follow createrepo_c (`cr_package_from_header`) so that
//! dnf sees the same package whichever tool indexed the repository.

use anyhow::{anyhow, Context, Result};
use rpm::{IndexSignatureTag, IndexTag, PackageMetadata};
use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::util::validate;

/// How many changelog entries go into other.xml (createrepo_c's default).
pub const CHANGELOG_LIMIT: usize = 10;

const RPMSENSE_LESS: u32 = 1 << 1;
const RPMSENSE_GREATER: u32 = 1 << 2;
const RPMSENSE_EQUAL: u32 = 1 << 3;
const RPMSENSE_PREREQ: u32 = 1 << 6;
const RPMSENSE_SCRIPT_PRE: u32 = 1 << 9;
const RPMSENSE_SCRIPT_POST: u32 = 1 << 10;
const RPMFILE_GHOST: u32 = 1 << 6;
const S_IFMT: u16 = 0o170000;
const S_IFDIR: u16 = 0o040000;

/// One dependency entry (`<rpm:entry>`). `flags` is empty for unversioned
/// entries; `epoch`/`ver`/`rel` are split from the RPM version string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dep {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub flags: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rel: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pre: bool,
}

/// File type as filelists.xml spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    File,
    Dir,
    Ghost,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRec {
    pub path: String,
    pub kind: FileKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changelog {
    pub author: String,
    pub date: u64,
    pub text: String,
}

/// Everything primary.xml, filelists.xml and other.xml say about a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageMeta {
    pub name: String,
    pub arch: String,
    pub epoch: u32,
    pub version: String,
    pub release: String,
    /// sha256 of the whole file (the pkgid).
    pub checksum: String,
    pub summary: String,
    pub description: String,
    pub packager: String,
    pub url: String,
    pub time_file: u64,
    pub time_build: u64,
    pub size_package: u64,
    pub size_installed: u64,
    pub size_archive: u64,
    /// Relative to the repository root, e.g. `Packages/foo-1-1.x86_64.rpm`.
    pub location: String,
    pub license: String,
    pub vendor: String,
    pub group: String,
    pub buildhost: String,
    pub sourcerpm: String,
    pub header_start: u64,
    pub header_end: u64,
    pub provides: Vec<Dep>,
    pub requires: Vec<Dep>,
    pub conflicts: Vec<Dep>,
    pub obsoletes: Vec<Dep>,
    pub suggests: Vec<Dep>,
    pub enhances: Vec<Dep>,
    pub recommends: Vec<Dep>,
    pub supplements: Vec<Dep>,
    pub files: Vec<FileRec>,
    pub changelogs: Vec<Changelog>,
}

impl PackageMeta {
    /// `name-[epoch:]version-release.arch`, for messages.
    pub fn nevra(&self) -> String {
        if self.epoch == 0 {
            format!(
                "{}-{}-{}.{}",
                self.name, self.version, self.release, self.arch
            )
        } else {
            format!(
                "{}-{}:{}-{}.{}",
                self.name, self.epoch, self.version, self.release, self.arch
            )
        }
    }

    /// The canonical file name khotfix stores the package under.
    pub fn file_name(&self) -> String {
        format!(
            "{}-{}-{}.{}.rpm",
            self.name, self.version, self.release, self.arch
        )
    }
}

/// createrepo_c's primary-file filter: files a dependency solver commonly
/// needs (`/etc/*`, anything under a `bin/` directory, `/usr/lib/sendmail`).
pub fn is_primary_file(path: &str) -> bool {
    path.starts_with("/etc/") || path == "/usr/lib/sendmail" || path.contains("bin/")
}

/// Facts about the file that do not come from the header.
pub struct FileFacts<'a> {
    pub checksum: &'a str,
    pub size: u64,
    pub mtime: u64,
    pub location: &'a str,
}

/// Read the header of the RPM at `path` and build its metadata. Rejects source
/// packages and names that are unsafe as file names.
pub fn read_package(path: &Path, facts: &FileFacts<'_>) -> Result<PackageMeta> {
    super::rpmcheck::check_file(path)
        .map_err(|e| anyhow!("{}: not a readable RPM: {e}", path.display()))?;
    let md = PackageMetadata::open(path)
        .map_err(|e| anyhow!("{}: not a readable RPM: {e}", path.display()))?;
    from_metadata(&md, facts).with_context(|| format!("{}", path.display()))
}

fn opt_str(h: &rpm::Header<IndexTag>, tag: IndexTag) -> String {
    h.get_entry_data_as_string(tag)
        .or_else(|_| h.get_entry_data_as_i18n_string(tag))
        .map(str::to_owned)
        .unwrap_or_default()
}

fn opt_u64(h: &rpm::Header<IndexTag>, tag: IndexTag) -> Option<u64> {
    h.get_entry_data_as_u64(tag)
        .ok()
        .or_else(|| h.get_entry_data_as_u32(tag).ok().map(u64::from))
}

/// Build the metadata from an already parsed header.
pub fn from_metadata(md: &PackageMetadata, facts: &FileFacts<'_>) -> Result<PackageMeta> {
    if md.is_source_package() {
        anyhow::bail!("is a source RPM; only binary packages can be published");
    }
    let h = &md.header;
    let name = md.get_name().map_err(|e| anyhow!("no package name: {e}"))?;
    let version = md.get_version().map_err(|e| anyhow!("no version: {e}"))?;
    let release = md.get_release().map_err(|e| anyhow!("no release: {e}"))?;
    let arch = md.get_arch().map_err(|e| anyhow!("no arch: {e}"))?;
    for (what, v) in [
        ("name", name),
        ("version", version),
        ("release", release),
        ("arch", arch),
    ] {
        validate::package_token(&format!("package {what}"), v).map_err(|e| anyhow!(e))?;
    }
    let epoch = md.get_epoch().unwrap_or(0);

    let offsets = md.get_package_segment_offsets();
    let size_archive = opt_u64(h, IndexTag::RPMTAG_ARCHIVESIZE)
        .or_else(|| opt_u64(h, IndexTag::RPMTAG_LONGARCHIVESIZE))
        .or_else(|| {
            md.signature
                .get_entry_data_as_u32(IndexSignatureTag::RPMSIGTAG_PAYLOADSIZE)
                .ok()
                .map(u64::from)
        })
        .or_else(|| {
            md.signature
                .get_entry_data_as_u64(IndexSignatureTag::RPMSIGTAG_LONGARCHIVESIZE)
                .ok()
        })
        .unwrap_or(0);

    let files = read_files(md)?;
    let provides = deps(md, Kind::Provides, &files)?;
    let provided: std::collections::HashSet<&str> =
        provides.iter().map(|d| d.name.as_str()).collect();
    let mut requires = deps(md, Kind::Requires, &files)?;
    requires.retain(|d| !provided.contains(d.name.as_str()));
    let requires = filter_libc(requires);

    Ok(PackageMeta {
        name: name.to_owned(),
        arch: arch.to_owned(),
        epoch,
        version: version.to_owned(),
        release: release.to_owned(),
        checksum: facts.checksum.to_owned(),
        summary: opt_str(h, IndexTag::RPMTAG_SUMMARY),
        description: opt_str(h, IndexTag::RPMTAG_DESCRIPTION),
        packager: opt_str(h, IndexTag::RPMTAG_PACKAGER),
        url: opt_str(h, IndexTag::RPMTAG_URL),
        time_file: facts.mtime,
        time_build: opt_u64(h, IndexTag::RPMTAG_BUILDTIME).unwrap_or(0),
        size_package: facts.size,
        size_installed: md.get_installed_size().unwrap_or(0),
        size_archive,
        location: facts.location.to_owned(),
        license: opt_str(h, IndexTag::RPMTAG_LICENSE),
        vendor: opt_str(h, IndexTag::RPMTAG_VENDOR),
        group: opt_str(h, IndexTag::RPMTAG_GROUP),
        buildhost: opt_str(h, IndexTag::RPMTAG_BUILDHOST),
        sourcerpm: opt_str(h, IndexTag::RPMTAG_SOURCERPM),
        header_start: offsets.header,
        header_end: offsets.payload,
        provides,
        requires,
        conflicts: deps(md, Kind::Conflicts, &files)?,
        obsoletes: deps(md, Kind::Obsoletes, &files)?,
        suggests: deps(md, Kind::Suggests, &files)?,
        enhances: deps(md, Kind::Enhances, &files)?,
        recommends: deps(md, Kind::Recommends, &files)?,
        supplements: deps(md, Kind::Supplements, &files)?,
        files,
        changelogs: changelogs(md)?,
    })
}

fn read_files(md: &PackageMetadata) -> Result<Vec<FileRec>> {
    let h = &md.header;
    let split = md
        .get_file_paths_split()
        .map_err(|e| anyhow!("bad file list: {e}"))?;
    if split.is_empty() {
        return Ok(Vec::new());
    }
    let modes = h
        .get_entry_data_as_u16_array(IndexTag::RPMTAG_FILEMODES)
        .map_err(|e| anyhow!("bad file modes: {e}"))?;
    let flags = h
        .get_entry_data_as_u32_array(IndexTag::RPMTAG_FILEFLAGS)
        .map_err(|e| anyhow!("bad file flags: {e}"))?;
    if modes.len() != split.len() || flags.len() != split.len() {
        anyhow::bail!("file tables have different lengths");
    }
    Ok(split
        .iter()
        .zip(modes.iter().zip(flags.iter()))
        .map(|((dir, base), (&mode, &flag))| {
            let kind = if mode & S_IFMT == S_IFDIR {
                FileKind::Dir
            } else if flag & RPMFILE_GHOST != 0 {
                FileKind::Ghost
            } else {
                FileKind::File
            };
            FileRec {
                path: format!("{dir}{base}"),
                kind,
            }
        })
        .collect())
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Provides,
    Requires,
    Conflicts,
    Obsoletes,
    Suggests,
    Enhances,
    Recommends,
    Supplements,
}

fn deps(md: &PackageMetadata, kind: Kind, files: &[FileRec]) -> Result<Vec<Dep>> {
    use IndexTag::*;
    let (n, f, v) = match kind {
        Kind::Provides => (
            RPMTAG_PROVIDENAME,
            RPMTAG_PROVIDEFLAGS,
            RPMTAG_PROVIDEVERSION,
        ),
        Kind::Requires => (
            RPMTAG_REQUIRENAME,
            RPMTAG_REQUIREFLAGS,
            RPMTAG_REQUIREVERSION,
        ),
        Kind::Conflicts => (
            RPMTAG_CONFLICTNAME,
            RPMTAG_CONFLICTFLAGS,
            RPMTAG_CONFLICTVERSION,
        ),
        Kind::Obsoletes => (
            RPMTAG_OBSOLETENAME,
            RPMTAG_OBSOLETEFLAGS,
            RPMTAG_OBSOLETEVERSION,
        ),
        Kind::Suggests => (
            RPMTAG_SUGGESTNAME,
            RPMTAG_SUGGESTFLAGS,
            RPMTAG_SUGGESTVERSION,
        ),
        Kind::Enhances => (
            RPMTAG_ENHANCENAME,
            RPMTAG_ENHANCEFLAGS,
            RPMTAG_ENHANCEVERSION,
        ),
        Kind::Recommends => (
            RPMTAG_RECOMMENDNAME,
            RPMTAG_RECOMMENDFLAGS,
            RPMTAG_RECOMMENDVERSION,
        ),
        Kind::Supplements => (
            RPMTAG_SUPPLEMENTNAME,
            RPMTAG_SUPPLEMENTFLAGS,
            RPMTAG_SUPPLEMENTVERSION,
        ),
    };
    let h = &md.header;
    let names = match h.get_entry_data_as_string_array(n) {
        Ok(v) => v,
        Err(rpm::Error::TagNotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(anyhow!("bad dependency names: {e}")),
    };
    let flags = h
        .get_entry_data_as_u32_array(f)
        .map_err(|e| anyhow!("bad dependency flags: {e}"))?;
    let versions = h
        .get_entry_data_as_string_array(v)
        .map_err(|e| anyhow!("bad dependency versions: {e}"))?;
    if flags.len() != names.len() || versions.len() != names.len() {
        anyhow::bail!("dependency tables have different lengths");
    }
    let own_primary: std::collections::HashSet<&str> = if kind == Kind::Requires {
        files
            .iter()
            .map(|f| f.path.as_str())
            .filter(|p| is_primary_file(p))
            .collect()
    } else {
        Default::default()
    };
    let mut out: Vec<Dep> = Vec::with_capacity(names.len());
    let mut seen: std::collections::HashMap<String, (String, String, bool)> =
        std::collections::HashMap::new();
    for ((name, fl), ver) in names.iter().zip(flags).zip(versions) {
        let mut pre = false;
        let flag_str = flag_name(fl);
        if kind == Kind::Requires {
            if name.starts_with("rpmlib(") || own_primary.contains(name) {
                continue;
            }
            pre = fl & (RPMSENSE_PREREQ | RPMSENSE_SCRIPT_PRE | RPMSENSE_SCRIPT_POST) != 0;
            if let Some((f2, v2, p2)) = seen.get(*name) {
                if *f2 == flag_str && v2 == ver && *p2 == pre {
                    continue;
                }
            }
            seen.insert(
                name.to_string(),
                (flag_str.to_string(), ver.to_string(), pre),
            );
        }
        let (epoch, v, r) = split_evr(ver);
        out.push(Dep {
            name: name.to_string(),
            flags: flag_str.to_string(),
            epoch,
            ver: v,
            rel: r,
            pre,
        });
    }
    Ok(out)
}

fn flag_name(flags: u32) -> &'static str {
    match flags & (RPMSENSE_LESS | RPMSENSE_GREATER | RPMSENSE_EQUAL) {
        x if x == RPMSENSE_LESS => "LT",
        x if x == RPMSENSE_GREATER => "GT",
        x if x == RPMSENSE_EQUAL => "EQ",
        x if x == RPMSENSE_LESS | RPMSENSE_EQUAL => "LE",
        x if x == RPMSENSE_GREATER | RPMSENSE_EQUAL => "GE",
        _ => "",
    }
}

/// Split `[epoch:]version[-release]` the way createrepo_c does: a missing
/// epoch becomes "0" when there is a version at all.
fn split_evr(s: &str) -> (Option<String>, Option<String>, Option<String>) {
    if s.is_empty() {
        return (None, None, None);
    }
    let (epoch, rest) = match s.find(':') {
        Some(i) if s[..i].bytes().all(|b| b.is_ascii_digit()) => {
            let e = if i == 0 { "0" } else { &s[..i] };
            (e.to_string(), &s[i + 1..])
        }
        _ => ("0".to_string(), s),
    };
    let (v, r) = match rest.rfind('-') {
        Some(i) => (rest[..i].to_string(), Some(rest[i + 1..].to_string())),
        None => (rest.to_string(), None),
    };
    (Some(epoch), Some(v), r)
}

/// createrepo_c keeps only the highest `libc.so.6(GLIBC_x)` requirement.
fn filter_libc(reqs: Vec<Dep>) -> Vec<Dep> {
    let mut best: Option<Dep> = None;
    let mut out = Vec::with_capacity(reqs.len());
    for d in reqs {
        if d.name.starts_with("libc.so.6") {
            best = match best {
                None => Some(d),
                Some(b) => {
                    if crate::kernel::rpmvercmp(&d.name, &b.name) == std::cmp::Ordering::Greater {
                        Some(d)
                    } else {
                        Some(b)
                    }
                }
            };
        } else {
            out.push(d);
        }
    }
    if let Some(b) = best {
        out.insert(0, b);
    }
    out
}

fn changelogs(md: &PackageMetadata) -> Result<Vec<Changelog>> {
    let entries = md
        .get_changelog_entries()
        .map_err(|e| anyhow!("bad changelog: {e}"))?;
    // The header lists newest first; createrepo_c keeps the newest
    // CHANGELOG_LIMIT and writes them oldest first, bumping equal dates so
    // each entry has a distinct one.
    let mut out: Vec<Changelog> = Vec::new();
    let mut last_time: Option<u64> = None;
    for e in entries.into_iter().take(CHANGELOG_LIMIT) {
        let author = e.name.trim_end_matches(' ').to_string();
        out.insert(
            0,
            Changelog {
                author,
                date: e.timestamp,
                text: e.description,
            },
        );
        if last_time == Some(e.timestamp) {
            for (t, prev) in (e.timestamp..).zip(out.iter_mut().skip(1)) {
                if prev.date != t {
                    break;
                }
                prev.date += 1;
            }
        } else {
            last_time = Some(e.timestamp);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evr_split() {
        assert_eq!(
            split_evr("1:2.0-3"),
            (Some("1".into()), Some("2.0".into()), Some("3".into()))
        );
        assert_eq!(
            split_evr("2.0"),
            (Some("0".into()), Some("2.0".into()), None)
        );
        assert_eq!(split_evr(""), (None, None, None));
    }

    #[test]
    fn primary_filter() {
        assert!(is_primary_file("/etc/foo"));
        assert!(is_primary_file("/usr/sbin/kpatch"));
        assert!(is_primary_file("/usr/lib/sendmail"));
        assert!(!is_primary_file("/usr/lib/modules/x.ko"));
    }

    #[test]
    fn flags() {
        assert_eq!(flag_name(RPMSENSE_GREATER | RPMSENSE_EQUAL), "GE");
        assert_eq!(flag_name(RPMSENSE_EQUAL | RPMSENSE_PREREQ), "EQ");
        assert_eq!(flag_name(0), "");
    }
}
