//! Unified diffs: parsed just enough to validate them (headers, hunk line
//! counts) and to tell later stages which files and lines a patch touches.

use std::fmt;

/// One file section of a unified diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePatch {
    /// Path after stripping one leading component (`a/`, `b/`), as `patch -p1`.
    pub path: String,
    pub hunks: Vec<Hunk>,
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
    /// Body lines with their leading ' ', '+' or '-'.
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
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

fn strip_one(path: &str) -> &str {
    let path = path.split('\t').next().unwrap_or(path).trim_end();
    match path.split_once('/') {
        Some((_, rest)) => rest,
        None => path,
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

impl Patch {
    /// Parse a unified diff; refuse anything that is not one.
    pub fn parse(text: &str) -> Result<Patch, PatchError> {
        let lines: Vec<&str> = text.lines().collect();
        let mut files: Vec<FilePatch> = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let l = lines[i];
            if let Some(old) = l.strip_prefix("--- ") {
                let Some(new) = lines.get(i + 1).and_then(|n| n.strip_prefix("+++ ")) else {
                    return Err(PatchError { line: i + 1, message: "'---' header not followed by '+++'".into() });
                };
                let target = if new.starts_with("/dev/null") { strip_one(old) } else { strip_one(new) };
                crate::util::validate::relative_path("patched file", target)
                    .map_err(|m| PatchError { line: i + 2, message: m })?;
                files.push(FilePatch { path: target.to_string(), hunks: Vec::new() });
                i += 2;
                continue;
            }
            if l.starts_with("@@ ") {
                let Some(file) = files.last_mut() else {
                    return Err(PatchError { line: i + 1, message: "hunk before any '---'/'+++' file header".into() });
                };
                let (old_start, old_len, new_start, new_len, section) = parse_hunk_header(l)
                    .ok_or_else(|| PatchError { line: i + 1, message: format!("malformed hunk header {l:?}") })?;
                let header_line = i + 1;
                let (mut seen_old, mut seen_new) = (0u32, 0u32);
                let mut body = Vec::new();
                i += 1;
                while (seen_old < old_len || seen_new < new_len) && i < lines.len() {
                    let b = lines[i];
                    match b.chars().next() {
                        Some(' ') | None => {
                            seen_old += 1;
                            seen_new += 1;
                        }
                        Some('-') => seen_old += 1,
                        Some('+') => seen_new += 1,
                        Some('\\') => {}
                        Some(_) => break,
                    }
                    body.push(b.to_string());
                    i += 1;
                }
                if seen_old != old_len || seen_new != new_len {
                    return Err(PatchError {
                        line: header_line,
                        message: format!(
                            "hunk says -{old_len} +{new_len} lines but has -{seen_old} +{seen_new}"
                        ),
                    });
                }
                while i < lines.len() && lines[i].starts_with('\\') {
                    i += 1;
                }
                file.hunks.push(Hunk { old_start, old_len, new_start, new_len, section, line: header_line, lines: body });
                continue;
            }
            i += 1;
        }
        if files.is_empty() {
            return Err(PatchError { line: 1, message: "no '---'/'+++' file headers: not a unified diff".into() });
        }
        if let Some(f) = files.iter().find(|f| f.hunks.is_empty()) {
            return Err(PatchError { line: 1, message: format!("file {} has no hunks", f.path) });
        }
        Ok(Patch { files })
    }
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
