//! A patch that changes only comments, blank lines or indentation is an
//! error in preflight (kpatch-build would fail with "no functional changes
//! found" after a full build): one line naming the patch, exit 1.

mod support;

use support::bin::khotfix;

use std::path::Path;

fn preflight(dir: &Path, name: &str, text: &str) -> (i32, String) {
    std::fs::write(dir.join(name), text).unwrap();
    let out = khotfix()
        .args(["preflight", "--patch", name])
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

const HEAD: &str = "diff --git a/net/x.c b/net/x.c\n--- a/net/x.c\n+++ b/net/x.c\n";

#[test]
fn comment_only_patch_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let text = format!(
        "{HEAD}@@ -10,4 +10,5 @@ static void f(void)\n {{\n+\t/* a comment */\n \tg();\n \th();\n }}\n"
    );
    let (code, out) = preflight(d.path(), "comment.patch", &text);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with("comment.patch:4: error: [no-functional-change] net/x.c: the patch has no functional change"),
        "{out}"
    );
}

#[test]
fn reindent_and_blank_lines_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let text = format!(
        "{HEAD}@@ -10,4 +10,5 @@ static void f(void)\n {{\n-  g();\n-  h(1,  2);\n+\tg();\n+\n+\th(1, 2); // why\n }}\n"
    );
    let (code, out) = preflight(d.path(), "reindent.patch", &text);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("[no-functional-change]"), "{out}");
}

#[test]
fn code_change_next_to_a_comment_is_not() {
    let d = tempfile::tempdir().unwrap();
    let text = format!(
        "{HEAD}@@ -10,4 +10,5 @@ static void f(void)\n {{\n+\t/* a comment */\n-\tg();\n+\tg2();\n \th();\n }}\n"
    );
    let (code, out) = preflight(d.path(), "real.patch", &text);
    assert_eq!(code, 0, "{out}");
    assert!(out.is_empty(), "{out}");
}
