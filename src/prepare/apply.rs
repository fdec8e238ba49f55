//! Apply a target's patches to a prepared kernel tree, all of them checked
//! first, so a patch that does not apply fails in seconds, before any compile
//! starts, with one line naming the patch, the file and the hunk.
//!
//! The check is a real run of GNU `patch` over a scratch copy of only the
//! files the patches touch (a few files, not the whole tree). That is a dry
//! run that still sees each patch on top of the ones before it, which
//! `patch --dry-run` per patch cannot do for a series where patch 2 edits
//! lines patch 1 added. Only when every patch applies there is the real tree
//! patched, with the same tool and flags kpatch-build uses (`-p1 -N`).

use crate::patchfile::Patch;
use crate::util::proc::process;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Where a hunk landed when it did not land exactly where its header said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HunkNote {
    /// 1-based hunk number within its file section (as `patch` counts).
    pub hunk: usize,
    /// Line of the hunk's `@@` header in the patch file.
    pub header_line: usize,
    /// Lines away from where the header said.
    pub offset: i64,
    /// Context lines ignored to make it fit (0 = exact).
    pub fuzz: u32,
}

/// One file a patch changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedFile {
    pub path: String,
    /// Hunks that applied with an offset or fuzz (a reviewer should look).
    pub notes: Vec<HunkNote>,
}

/// One patch that applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedPatch {
    pub patch: PathBuf,
    pub files: Vec<AppliedFile>,
}

/// The result of applying a series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    pub tree: PathBuf,
    pub patches: Vec<AppliedPatch>,
    /// False for [`check`]: the tree was not modified.
    pub applied: bool,
}

impl ApplyReport {
    /// Any hunk applied with fuzz (context that did not match)?
    pub fn fuzzy(&self) -> bool {
        self.patches
            .iter()
            .flat_map(|p| &p.files)
            .flat_map(|f| &f.notes)
            .any(|n| n.fuzz > 0)
    }
}

/// Why a patch series does not apply. Every message is one line that starts
/// with `patch:line:` so editors can jump to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("{}:{line}: hunk #{hunk} of {file} does not apply at line {at} of the tree's file ({header}){more}", .patch.display())]
    HunkFailed {
        patch: PathBuf,
        file: String,
        hunk: usize,
        /// Line of the `@@` header in the patch file.
        line: usize,
        /// The `@@ ... @@` header text.
        header: String,
        /// Where `patch` tried it in the target file.
        at: u64,
        /// ", and N more hunks" when several failed.
        more: String,
    },
    #[error("{}:{line}: {file}: no such file in the kernel tree {}", .patch.display(), .tree.display())]
    MissingFile {
        patch: PathBuf,
        file: String,
        line: usize,
        tree: PathBuf,
    },
    #[error("{}:{line}: {file}: already applied (patch detects a reversed or previously applied patch)", .patch.display())]
    AlreadyApplied {
        patch: PathBuf,
        file: String,
        line: usize,
    },
    #[error("{}:{line}: not a valid unified diff: {message}", .patch.display())]
    Malformed {
        patch: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: {message}", .patch.display())]
    Tool { patch: PathBuf, message: String },
    #[error("{context}: {message}")]
    Io { context: String, message: String },
}

fn io_err(context: impl Into<String>, e: impl std::fmt::Display) -> ApplyError {
    ApplyError::Io {
        context: context.into(),
        message: e.to_string(),
    }
}

/// Check that `patches`, in order, apply to `tree`, without touching it.
///
/// A single patch whose sections name distinct files is checked with
/// `patch --dry-run` on the tree itself: nothing to copy and nothing written,
/// as fast as the dry run a user would type. A series (or a patch that edits
/// one file in two sections, which a dry run would check against the
/// unpatched file) goes through the scratch copy.
pub fn check(tree: &Path, patches: &[PathBuf]) -> Result<ApplyReport, ApplyError> {
    let parsed = parse_all(patches)?;
    if let [(path, p)] = parsed.as_slice() {
        if dry_run_suffices(path, p)? {
            return Ok(ApplyReport {
                tree: tree.to_path_buf(),
                patches: vec![run_patch(tree, tree, path, p, DryRun::Yes)?],
                applied: false,
            });
        }
    }
    let scratch = tempfile::Builder::new()
        .prefix("khotfix-apply-check-")
        .tempdir()
        .map_err(|e| io_err("creating a scratch directory", e))?;
    for (path, p) in &parsed {
        for f in &p.files {
            copy_touched(tree, scratch.path(), &f.path)?;
        }
        // Sources of git renames/copies and old names are read too.
        for rel in source_paths(path)? {
            copy_touched(tree, scratch.path(), &rel)?;
        }
    }
    let mut out = Vec::new();
    for (path, p) in &parsed {
        out.push(run_patch(scratch.path(), tree, path, p, DryRun::No)?);
    }
    Ok(ApplyReport {
        tree: tree.to_path_buf(),
        patches: out,
        applied: false,
    })
}

/// Check every patch (see [`check`]), then apply them to `tree` for real.
pub fn apply(tree: &Path, patches: &[PathBuf]) -> Result<ApplyReport, ApplyError> {
    check(tree, patches)?;
    let parsed = parse_all(patches)?;
    let mut out = Vec::new();
    for (path, p) in &parsed {
        out.push(run_patch(tree, tree, path, p, DryRun::No)?);
    }
    Ok(ApplyReport {
        tree: tree.to_path_buf(),
        patches: out,
        applied: true,
    })
}

/// True when a dry run sees what a real run would: no git rename, copy or
/// mode sections, no file touched by two sections, and every old name
/// (`--- a/x`) is the file's own name.
fn dry_run_suffices(path: &Path, p: &Patch) -> Result<bool, ApplyError> {
    if p.files.iter().any(|f| f.git) {
        return Ok(false);
    }
    let mut seen = std::collections::HashSet::new();
    if !p.files.iter().all(|f| seen.insert(f.path.as_str())) {
        return Ok(false);
    }
    Ok(source_paths(path)?
        .iter()
        .all(|old| seen.contains(old.as_str())))
}

/// Whether GNU patch writes the files it patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DryRun {
    Yes,
    No,
}

fn parse_all(patches: &[PathBuf]) -> Result<Vec<(PathBuf, Patch)>, ApplyError> {
    patches
        .iter()
        .map(|path| {
            let text = crate::patchfile::read_patch_file(path)
                .map_err(|e| io_err(format!("reading patch {}", path.display()), e))?;
            let p = Patch::parse(&text).map_err(|e| ApplyError::Malformed {
                patch: path.clone(),
                line: e.line,
                message: e.message,
            })?;
            Ok((path.clone(), p))
        })
        .collect()
}

/// Old-side paths a patch reads: `--- a/x` names and git `rename from` /
/// `copy from` sources. Only paths that pass `validate::relative_path`.
fn source_paths(path: &Path) -> Result<Vec<String>, ApplyError> {
    let text = crate::patchfile::read_patch_file(path)
        .map_err(|e| io_err(format!("reading patch {}", path.display()), e))?;
    let mut out = Vec::new();
    for l in text.lines() {
        let rel = if let Some(old) = l.strip_prefix("--- ") {
            let old = old.split('\t').next().unwrap_or(old).trim_end();
            match old.split_once('/') {
                Some((_, rest)) if old != "/dev/null" => rest.to_string(),
                _ => continue,
            }
        } else if let Some(r) = l
            .strip_prefix("rename from ")
            .or_else(|| l.strip_prefix("copy from "))
        {
            r.trim_end().to_string()
        } else {
            continue;
        };
        if crate::util::validate::relative_path("patched file", &rel).is_ok() {
            out.push(rel);
        }
    }
    Ok(out)
}

/// Copy `rel` from the tree into the scratch directory, if it exists there.
/// Paths were validated by `Patch::parse` (relative, no `..`).
fn copy_touched(tree: &Path, scratch: &Path, rel: &str) -> Result<(), ApplyError> {
    let src = tree.join(rel);
    let dst = scratch.join(rel);
    match std::fs::symlink_metadata(&src) {
        Ok(m) if m.is_file() => {
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| io_err(format!("creating {}", parent.display()), e))?;
            }
            std::fs::copy(&src, &dst)
                .map_err(|e| io_err(format!("copying {}", src.display()), e))?;
            Ok(())
        }
        // Missing: the patch creates it, or `patch` reports it missing.
        _ => {
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| io_err(format!("creating {}", parent.display()), e))?;
            }
            Ok(())
        }
    }
}

/// Run GNU patch for one patch file in `dir`; `tree` names the real tree in errors.
fn run_patch(
    dir: &Path,
    tree: &Path,
    path: &Path,
    patch: &Patch,
    dry_run: DryRun,
) -> Result<AppliedPatch, ApplyError> {
    // `-d` makes patch chdir before it opens `-i`: a relative patch path
    // (from the command line, resolved against our current directory) must
    // be made absolute first. `path` itself still names the patch in errors.
    let input = std::path::absolute(path)
        .map_err(|e| io_err(format!("resolving patch path {}", path.display()), e))?;
    let mut gnu_patch = process("patch");
    gnu_patch
        .args([
            "-p1",
            "--forward",
            "--batch",
            "--no-backup-if-mismatch",
            "--quoting-style=literal",
            "--reject-file=-",
        ])
        .args((dry_run == DryRun::Yes).then_some("--dry-run"))
        .arg("-d")
        .arg(dir)
        .arg("-i")
        .arg(&input)
        .env("LC_ALL", "C")
        .env_remove("POSIXLY_CORRECT")
        .env_remove("PATCH_GET")
        .env_remove("SIMPLE_BACKUP_SUFFIX")
        .env_remove("VERSION_CONTROL");
    // Its exit status is read together with its output below.
    let out = gnu_patch
        .output_unchecked()
        .map_err(|e| io_err("running GNU patch", std::io::Error::other(e.to_string())))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed = parse_output(&text, path, tree, patch);
    match (out.status.success(), parsed) {
        (_, Err(e)) => Err(e),
        (true, Ok(files)) => Ok(AppliedPatch {
            patch: path.to_path_buf(),
            files,
        }),
        (false, Ok(_)) => {
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output")
                .trim();
            Err(ApplyError::Tool {
                patch: path.to_path_buf(),
                message: format!("GNU patch failed ({}): {last}", out.status),
            })
        }
    }
}

/// Read GNU patch's (LC_ALL=C) report. File sections are reported in patch
/// order, so the n-th "patching file" line is the n-th section of `patch`.
fn parse_output(
    text: &str,
    path: &Path,
    tree: &Path,
    patch: &Patch,
) -> Result<Vec<AppliedFile>, ApplyError> {
    let mut files: Vec<AppliedFile> = Vec::new();
    let mut section: Option<usize> = None;
    let mut failures: Vec<(usize, usize, u64)> = Vec::new(); // (section, hunk, at)
    let header_of = |s: usize, h: usize| -> (usize, String) {
        patch
            .files
            .get(s)
            .and_then(|f| f.hunks.get(h.wrapping_sub(1)))
            .map(|hk| {
                (
                    hk.line,
                    format!(
                        "@@ -{},{} +{},{} @@",
                        hk.old_start, hk.old_len, hk.new_start, hk.new_len
                    ),
                )
            })
            .unwrap_or((1, String::from("@@ ? @@")))
    };
    let file_of = |s: Option<usize>| {
        s.and_then(|s| patch.files.get(s))
            .map(|f| f.path.clone())
            .unwrap_or_default()
    };
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(name) = line
            .strip_prefix("patching file ")
            .or_else(|| line.strip_prefix("checking file "))
        {
            let next = section.map_or(0, |s| s + 1);
            section = Some(next);
            let name = patch
                .files
                .get(next)
                .map(|f| f.path.clone())
                .unwrap_or_else(|| name.to_string());
            files.push(AppliedFile {
                path: name,
                notes: Vec::new(),
            });
        } else if let Some(rest) = line.strip_prefix("can't find file to patch at input line ") {
            let input_line: usize = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let next = section.map_or(0, |s| s + 1);
            let f = patch
                .files
                .iter()
                .rev()
                .find(|f| f.header_line <= input_line)
                .or_else(|| patch.files.get(next));
            let (file, line) = f
                .map(|f| (f.path.clone(), f.header_line))
                .unwrap_or_default();
            return Err(ApplyError::MissingFile {
                patch: path.to_path_buf(),
                file,
                line,
                tree: tree.to_path_buf(),
            });
        } else if line.starts_with("Reversed (or previously applied) patch detected!") {
            let file = file_of(section);
            let line = section
                .and_then(|s| patch.files.get(s))
                .map_or(1, |f| f.header_line);
            return Err(ApplyError::AlreadyApplied {
                patch: path.to_path_buf(),
                file,
                line,
            });
        } else if let Some(rest) = line.strip_prefix("Hunk #") {
            let (num, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            let Ok(hunk) = num.parse::<usize>() else {
                continue;
            };
            let number_after = |key: &str| -> Option<i64> {
                rest.split_once(key)
                    .and_then(|(_, r)| {
                        r.trim_start()
                            .split(|c: char| !(c.is_ascii_digit() || c == '-'))
                            .next()
                    })
                    .and_then(|n| n.parse().ok())
            };
            if rest.starts_with("FAILED") {
                let at = number_after("at ").unwrap_or(0).max(0) as u64;
                failures.push((section.unwrap_or(0), hunk, at));
            } else if rest.starts_with("succeeded") {
                let offset = number_after("(offset ").unwrap_or(0);
                let fuzz = number_after("with fuzz ").unwrap_or(0).max(0) as u32;
                let (header_line, _) = header_of(section.unwrap_or(0), hunk);
                if let Some(f) = files.last_mut() {
                    f.notes.push(HunkNote {
                        hunk,
                        header_line,
                        offset,
                        fuzz,
                    });
                }
            }
        } else if let Some(rest) = line.strip_prefix("patch: **** malformed patch at line ") {
            let (n, msg) = rest.split_once(':').unwrap_or((rest, ""));
            return Err(ApplyError::Malformed {
                patch: path.to_path_buf(),
                line: n.trim().parse().unwrap_or(1),
                message: msg.trim().to_string(),
            });
        } else if let Some(rest) = line.strip_prefix("patch: **** ") {
            return Err(ApplyError::Tool {
                patch: path.to_path_buf(),
                message: rest.to_string(),
            });
        }
    }
    if let Some(&(s, hunk, at)) = failures.first() {
        let (line, header) = header_of(s, hunk);
        let more = match failures.len() {
            1 => String::new(),
            n => format!(", and {} more failed hunk(s)", n - 1),
        };
        return Err(ApplyError::HunkFailed {
            patch: path.to_path_buf(),
            file: file_of(Some(s)),
            hunk,
            line,
            header,
            at,
            more,
        });
    }
    Ok(files)
}
