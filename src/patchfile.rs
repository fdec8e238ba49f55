//! Unified diffs: parsed just enough to validate them (headers, hunk line
//! counts) and to tell later stages which files and lines a patch touches.

use std::fmt;

/// One file section of a unified diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePatch {
    /// Path after stripping one leading component (`a/`, `b/`), as `patch -p1`.
    pub path: String,
    /// 1-based line of the `---` header in the patch file.
    pub header_line: usize,
    pub hunks: Vec<Hunk>,
    /// A `diff --git` section without `---`/`+++` (mode change, rename,
    /// copy): no hunks, but GNU patch reports it as a file.
    pub git: bool,
}

impl Hunk {
    /// Body lines with their 1-based line numbers in the patch file.
    pub fn numbered_lines(&self) -> impl Iterator<Item = (usize, &str)> {
        self.lines
            .iter()
            .enumerate()
            .map(move |(i, l)| (self.line + 1 + i, l.as_str()))
    }
}

/// One `@@ -a,b +c,d @@` hunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    pub old_start: u32,
    pub old_len: u32,
    pub new_start: u32,
    pub new_len: u32,
    /// Text after the second `@@` (often the enclosing function).
    pub section: String,
    /// 1-based line of the `@@` header in the patch file.
    pub line: usize,
    /// Body lines with their leading ' ', '+', '-' or '\\' (context lines are
    /// normalized to a leading space, whatever form the diff used).
    pub lines: Vec<String>,
}

/// A parsed unified diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    pub files: Vec<FilePatch>,
}

/// Why a diff is malformed, with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError {
    pub line: usize,
    pub message: String,
    /// The diff is over one of the size limits (not malformed).
    pub too_large: bool,
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// The file name in a `---`/`+++` header, as GNU patch reads it: a
/// C-quoted name (git's form for unusual names), or the text up to the first
/// whitespace (a tab- or space-separated timestamp follows in `diff -u`).
fn header_name(field: &str) -> String {
    if let Some(q) = field.strip_prefix('"') {
        if let Some(name) = unquote_c(q) {
            return name;
        }
    }
    field.split([' ', '\t']).next().unwrap_or(field).to_string()
}

/// Undo git's C quoting of a name; `q` is the text after the opening quote.
/// `None` when there is no closing quote.
fn unquote_c(q: &str) -> Option<String> {
    let mut out = Vec::new();
    let b = q.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => return Some(String::from_utf8_lossy(&out).into_owned()),
            b'\\' if i + 1 < b.len() => {
                i += 1;
                let c = b[i];
                let octal = |j: usize| b.get(j).filter(|c| (b'0'..=b'7').contains(c));
                if octal(i).is_some() && octal(i + 1).is_some() && octal(i + 2).is_some() {
                    let v = (b[i] - b'0') as u32 * 64
                        + (b[i + 1] - b'0') as u32 * 8
                        + (b[i + 2] - b'0') as u32;
                    out.push(v as u8);
                    i += 2;
                } else {
                    out.push(match c {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        b'a' => 7,
                        b'b' => 8,
                        b'f' => 12,
                        b'v' => 11,
                        other => other,
                    });
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    None
}

/// Strip one leading component (`a/`, `b/`), as `patch -p1`.
fn strip_one(name: &str) -> &str {
    match name.split_once('/') {
        Some((_, rest)) => rest,
        None => name,
    }
}

fn parse_range(s: &str) -> Option<(u32, u32)> {
    match s.split_once(',') {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => Some((s.parse().ok()?, 1)),
    }
}

fn parse_hunk_header(line: &str) -> Option<(u32, u32, u32, u32, String)> {
    let rest = line.strip_prefix("@@ -")?;
    let (old, rest) = rest.split_once(" +")?;
    let (new, rest) = rest.split_once(" @@")?;
    let (os, ol) = parse_range(old)?;
    let (ns, nl) = parse_range(new)?;
    Some((os, ol, ns, nl, rest.trim().to_string()))
}

/// Size limits. A kernel fix is kilobytes; these are far above any real
/// patch and keep a hostile or mistaken input (a whole tree as one diff, a
/// generated file) from costing minutes or gigabytes before it is refused.
pub const MAX_PATCH_BYTES: u64 = 64 << 20;
/// Body lines (old plus new) one hunk may declare.
pub const MAX_HUNK_LINES: u64 = 1_000_000;
/// File sections one patch may have.
pub const MAX_FILES: usize = 10_000;

fn too_large(line: usize, message: String) -> PatchError {
    PatchError {
        line,
        message,
        too_large: true,
    }
}

/// Read a patch file, refusing one over [`MAX_PATCH_BYTES`] without reading
/// all of it. The error is one line without the path (callers name it).
pub fn read_patch_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    file.take(MAX_PATCH_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_PATCH_BYTES {
        return Err(format!(
            "patch is over the limit of {MAX_PATCH_BYTES} bytes"
        ));
    }
    Ok(text)
}

/// How many trailing blank context lines GNU patch restores when the patch
/// ends before its last hunk does.
const CHOPPED_BLANK_LINES: u32 = 3;

/// What a hunk body line is, read as GNU patch reads unified hunks.
enum BodyLine<'a> {
    /// Context, with its text. GNU patch also takes an empty line, a line
    /// starting with a tab and a line starting with `=` as context ("assume
    /// the space got eaten", e.g. by a mailer or an editor).
    Context(&'a str),
    Removed,
    Added,
    /// `\ No newline at end of file`.
    NoNewline,
    /// Anything else ends the hunk.
    Other,
}

fn body_line(l: &str) -> BodyLine<'_> {
    match l.as_bytes().first() {
        None => BodyLine::Context(""),
        Some(b' ' | b'=') => BodyLine::Context(&l[1..]),
        Some(b'\t') => BodyLine::Context(l),
        Some(b'-') => BodyLine::Removed,
        Some(b'+') => BodyLine::Added,
        Some(b'\\') => BodyLine::NoNewline,
        Some(_) => BodyLine::Other,
    }
}

impl Patch {
    /// Parse a unified diff; refuse anything that is not one. Text outside
    /// file sections (mail headers, `diff --git`/`index`/mode lines, a
    /// trailing signature) is skipped, as GNU patch skips it.
    pub fn parse(text: &str) -> Result<Patch, PatchError> {
        if text.len() as u64 > MAX_PATCH_BYTES {
            return Err(too_large(
                1,
                format!(
                    "patch is {} bytes, over the limit of {MAX_PATCH_BYTES} bytes",
                    text.len()
                ),
            ));
        }
        let lines: Vec<&str> = text.lines().collect();
        let mut files: Vec<FilePatch> = Vec::new();
        // A `diff --git` section not yet given `---`/`+++` lines: mode
        // changes, renames and copies have none, and GNU patch still
        // reports (and applies) them as a file of their own.
        let mut git: Option<FilePatch> = None;
        let mut i = 0;
        while i < lines.len() {
            let l = lines[i];
            if let Some(names) = l.strip_prefix("diff --git ") {
                files.extend(git.take());
                git = Some(git_section(names, i)?);
            } else if let Some(to) = l
                .strip_prefix("rename to ")
                .or_else(|| l.strip_prefix("copy to "))
            {
                if let Some(g) = git.as_mut() {
                    g.path = checked_path(strip_git_name(to, false), i)?;
                }
            } else if let Some(old) = l.strip_prefix("--- ") {
                // A `---` line not followed by `+++` is prose (GNU patch skips it).
                let Some(new) = lines.get(i + 1).and_then(|n| n.strip_prefix("+++ ")) else {
                    i += 1;
                    continue;
                };
                let (old, new) = (header_name(old), header_name(new));
                let target = if new == "/dev/null" {
                    strip_one(&old)
                } else {
                    strip_one(&new)
                };
                let path = checked_path(target, i + 1)?;
                git = None;
                // GNU patch ignores a `---`/`+++` pair that no hunk follows.
                if files.last().is_some_and(|f| f.hunks.is_empty() && !f.git) {
                    files.pop();
                }
                files.push(FilePatch {
                    path,
                    header_line: i + 1,
                    hunks: Vec::new(),
                    git: false,
                });
                i += 2;
                continue;
            } else if l.starts_with("@@ ") {
                let Some(file) = files.last_mut().filter(|_| git.is_none()) else {
                    return Err(PatchError {
                        line: i + 1,
                        message: "hunk before any '---'/'+++' file header".into(),
                        too_large: false,
                    });
                };
                let (hunk, next) = parse_hunk(&lines, i)?;
                file.hunks.push(hunk);
                i = next;
                continue;
            }
            i += 1;
        }
        files.extend(git.take());
        if files.last().is_some_and(|f| f.hunks.is_empty() && !f.git) {
            files.pop();
        }
        if files.len() > MAX_FILES {
            return Err(too_large(
                files[MAX_FILES].header_line,
                format!(
                    "{} files, over the limit of {MAX_FILES} files per patch",
                    files.len()
                ),
            ));
        }
        if files.is_empty() {
            return Err(PatchError {
                line: 1,
                message: "no '---'/'+++' file headers with hunks: not a unified diff".into(),
                too_large: false,
            });
        }
        Ok(Patch { files })
    }
}

/// A `diff --git a/X b/Y` section, named after its new side (`Y`).
fn git_section(names: &str, i: usize) -> Result<FilePatch, PatchError> {
    let new = match names.strip_prefix('"') {
        Some(_) => names.rsplit_once(" \"").map(|(_, n)| format!("\"{n}")),
        None => names.rsplit_once(" b/").map(|(_, n)| format!("b/{n}")),
    }
    .ok_or_else(|| PatchError {
        line: i + 1,
        message: format!("malformed 'diff --git' line {names:?}"),
        too_large: false,
    })?;
    Ok(FilePatch {
        path: checked_path(strip_git_name(&new, true), i)?,
        header_line: i + 1,
        hunks: Vec::new(),
        git: true,
    })
}

/// A git name, unquoted, with its `a/`/`b/` prefix stripped when `prefixed`.
fn strip_git_name(name: &str, prefixed: bool) -> String {
    let name = match name.strip_prefix('"').and_then(unquote_c) {
        Some(n) => n,
        None => name.to_string(),
    };
    if prefixed {
        strip_one(&name).to_string()
    } else {
        name
    }
}

/// `name` if it is a safe relative path; the error names line `i + 1`.
fn checked_path(name: impl AsRef<str>, i: usize) -> Result<String, PatchError> {
    let name = name.as_ref();
    crate::util::validate::relative_path("patched file", name).map_err(|m| PatchError {
        line: i + 1,
        message: m,
        too_large: false,
    })?;
    Ok(name.to_string())
}

/// Parse the hunk whose `@@` header is `lines[at]`; returns it and the index
/// of the first line after it. Body lines are stored normalized: context
/// lines always start with a space.
fn parse_hunk(lines: &[&str], at: usize) -> Result<(Hunk, usize), PatchError> {
    let l = lines[at];
    let (old_start, old_len, new_start, new_len, section) =
        parse_hunk_header(l).ok_or_else(|| PatchError {
            line: at + 1,
            message: format!("malformed hunk header {l:?}"),
            too_large: false,
        })?;
    let header_line = at + 1;
    let declared = old_len as u64 + new_len as u64;
    if declared > MAX_HUNK_LINES {
        return Err(too_large(
            header_line,
            format!("hunk of {declared} lines, over the limit of {MAX_HUNK_LINES} lines per hunk"),
        ));
    }
    let (mut seen_old, mut seen_new) = (0u32, 0u32);
    let mut body = Vec::new();
    let mut i = at + 1;
    while (seen_old < old_len || seen_new < new_len) && i < lines.len() {
        let b = lines[i];
        match body_line(b) {
            BodyLine::Context(text) => {
                seen_old += 1;
                seen_new += 1;
                body.push(format!(" {text}"));
            }
            BodyLine::Removed => {
                seen_old += 1;
                body.push(b.to_string());
            }
            BodyLine::Added => {
                seen_new += 1;
                body.push(b.to_string());
            }
            BodyLine::NoNewline => body.push(b.to_string()),
            BodyLine::Other => break,
        }
        i += 1;
    }
    // At the end of the patch GNU patch assumes up to 3 blank context lines
    // were chopped off (by an editor or mailer) and puts them back.
    let short_old = old_len.checked_sub(seen_old);
    let short_new = new_len.checked_sub(seen_new);
    let chopped = short_old.filter(|&n| n <= CHOPPED_BLANK_LINES && short_new == Some(n));
    if let (true, Some(n)) = (i == lines.len(), chopped) {
        for _ in 0..n {
            body.push(" ".to_string());
        }
        seen_old = old_len;
        seen_new = new_len;
    }
    if seen_old != old_len || seen_new != new_len {
        return Err(PatchError {
            line: header_line,
            message: format!(
                "hunk says -{old_len} +{new_len} lines but has -{seen_old} +{seen_new}"
            ),
            too_large: false,
        });
    }
    while i < lines.len() && lines[i].starts_with('\\') {
        i += 1;
    }
    let hunk = Hunk {
        old_start,
        old_len,
        new_start,
        new_len,
        section,
        line: header_line,
        lines: body,
    };
    Ok((hunk, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "From: x\n\n--- a/net/x.c\n+++ b/net/x.c\n@@ -1,3 +1,3 @@ static void f(void)\n a\n-b\n+c\n d\n";

    #[test]
    fn parses() {
        let p = Patch::parse(OK).unwrap();
        assert_eq!(p.files[0].path, "net/x.c");
        assert_eq!(p.files[0].hunks[0].section, "static void f(void)");
        assert_eq!(p.files[0].hunks[0].line, 5);
        assert_eq!(p.files[0].header_line, 3);
    }

    #[test]
    fn refuses_bad_counts_and_traversal() {
        let bad = OK.replace("@@ -1,3 +1,3 @@", "@@ -1,4 +1,3 @@");
        assert!(Patch::parse(&bad).is_err());
        let bad = OK.replace("b/net/x.c", "b/../../etc/passwd");
        assert!(Patch::parse(&bad).is_err());
        assert!(Patch::parse("hello\n").is_err());
    }
}
