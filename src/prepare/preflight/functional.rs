//! Does a patch change anything the compiler sees? kpatch-build stops with
//! "no functional changes found" after a full build when a patch only adds
//! comments, blank lines or re-indents; this finds that before the build.
//!
//! The check is deliberately conservative: it answers "no functional change"
//! only when every hunk of every file is a C source or header whose old and
//! new text are the same line for line once comments are removed and runs of
//! whitespace outside string literals are collapsed. Anything it is unsure
//! of (a non-C file, a git rename or mode change, a string continued over a
//! line end, a hunk that may start inside a comment and changes comment-like
//! text) counts as a functional change.

use crate::patchfile::{FilePatch, Hunk, Patch};

/// True when the patch certainly changes nothing but comments and whitespace.
pub fn no_functional_change(patch: &Patch) -> bool {
    patch.files.iter().all(file_is_cosmetic)
}

fn file_is_cosmetic(f: &FilePatch) -> bool {
    let is_c = f.path.ends_with(".c") || f.path.ends_with(".h");
    is_c && !f.git && f.hunks.iter().all(hunk_is_cosmetic)
}

fn hunk_is_cosmetic(h: &Hunk) -> bool {
    match (side(h, '-'), side(h, '+')) {
        (Some(old), Some(new)) => old == new,
        _ => false,
    }
}

/// The normalized code lines of one side of a hunk (context plus `mine`),
/// blank ones dropped; `None` when unsure.
fn side(h: &Hunk, mine: char) -> Option<Vec<String>> {
    let mut in_comment = false;
    let mut out = Vec::new();
    for l in &h.lines {
        let first = l.chars().next().unwrap_or(' ');
        if first != ' ' && first != mine {
            continue;
        }
        let code = normalize(l.get(1..).unwrap_or(""), &mut in_comment)?;
        if !code.is_empty() {
            out.push(code);
        }
    }
    Some(out)
}

/// One line with comments removed (`in_comment` carries `/* ... */` over
/// lines), whitespace runs outside literals collapsed to one space, trimmed.
/// String and character literals are kept exactly. `None` when the line
/// ends inside a literal or with a backslash (a continuation that could
/// carry a string or `//` comment onto the next line).
fn normalize(line: &str, in_comment: &mut bool) -> Option<String> {
    let b: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut space = false;
    let mut i = 0;
    let push = |out: &mut String, c: char, space: &mut bool| {
        if *space && !out.is_empty() {
            out.push(' ');
        }
        *space = false;
        out.push(c);
    };
    while i < b.len() {
        if *in_comment {
            if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                *in_comment = false;
                space = true;
                i += 2;
            } else {
                i += 1;
            }
            continue;
        }
        match b[i] {
            '/' if b.get(i + 1) == Some(&'*') => {
                *in_comment = true;
                i += 2;
            }
            '/' if b.get(i + 1) == Some(&'/') => {
                if line.ends_with('\\') {
                    return None;
                }
                break;
            }
            q @ ('"' | '\'') => {
                push(&mut out, q, &mut space);
                i += 1;
                loop {
                    let c = *b.get(i)?;
                    out.push(c);
                    i += 1;
                    if c == '\\' {
                        out.push(*b.get(i)?);
                        i += 1;
                    } else if c == q {
                        break;
                    }
                }
            }
            c if c.is_whitespace() => {
                space = true;
                i += 1;
            }
            c => {
                push(&mut out, c, &mut space);
                i += 1;
            }
        }
    }
    if !*in_comment && out.ends_with('\\') {
        // A macro continued over lines is fine (same on both sides), but a
        // continuation can also carry a string: be conservative only then.
        if out.matches('"').count() % 2 == 1 {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosmetic(body: &str) -> bool {
        let text = format!("--- a/k.c\n+++ b/k.c\n{body}");
        no_functional_change(&Patch::parse(&text).unwrap())
    }

    #[test]
    fn comments_blank_lines_and_indentation() {
        assert!(cosmetic("@@ -1,2 +1,3 @@\n int a;\n+/* why */\n int b;\n"));
        assert!(cosmetic("@@ -1,2 +1,3 @@\n int a;\n+\n int b;\n"));
        assert!(cosmetic(
            "@@ -1,2 +1,2 @@\n int a;\n-int b;\n+\t  int   b; // note\n"
        ));
        assert!(cosmetic(
            "@@ -1,2 +1,5 @@\n int a;\n+/*\n+ * multi-line\n+ */\n int b;\n"
        ));
        assert!(cosmetic(
            "@@ -1,1 +1,1 @@\n-x = 1; /* old */\n+x = 1; /* new */\n"
        ));
    }

    #[test]
    fn code_changes_and_unsure_cases_are_functional() {
        assert!(!cosmetic("@@ -1,1 +1,1 @@\n-x = 1;\n+x = 2;\n"));
        // Whitespace inside a string literal is data.
        assert!(!cosmetic(
            "@@ -1,1 +1,1 @@\n-s = \"a b\";\n+s = \"a  b\";\n"
        ));
        // A comment marker inside a string is not a comment.
        assert!(!cosmetic("@@ -1,1 +1,1 @@\n-s = \"/*\";\n+s = \"/* x\";\n"));
        // Removing the space between two tokens joins them.
        assert!(!cosmetic("@@ -1,1 +1,1 @@\n-a b;\n+ab;\n"));
        // Uncommenting code.
        assert!(!cosmetic("@@ -1,1 +1,1 @@\n-/* f(); */\n+f();\n"));
        // The hunk may start inside a comment: comment-looking text counts.
        assert!(!cosmetic("@@ -1,2 +1,3 @@\n  * old\n+ * new\n  */\n"));
        // A string continued onto the next line.
        assert!(!cosmetic(
            "@@ -1,2 +1,2 @@\n s = \"a \\\n-/* b\";\n+/* c\";\n"
        ));
        // A `//` comment continued onto the next line.
        assert!(!cosmetic("@@ -1,2 +1,2 @@\n // x \\\n-f();\n+g();\n"));
        // Not C.
        let text = "--- a/Makefile\n+++ b/Makefile\n@@ -1 +1,2 @@\n x\n+# c\n";
        assert!(!no_functional_change(&Patch::parse(text).unwrap()));
    }
}
