//! The unified diff parser accepts what GNU `patch` accepts. Each case is a
//! small tree plus a diff written for it; GNU `patch --dry-run -p1` runs on
//! the tree and `Patch::parse` on the diff, and both must accept (or both
//! refuse). The diffs are written here, in the shapes real patches take.

use khotfix::patchfile::Patch;
use std::path::Path;
use std::process::Command;

/// (GNU patch accepts, Patch::parse accepts) for `diff` on a tree of `files`.
fn both(files: &[(&str, &str)], diff: &str) -> (bool, bool, String) {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("t");
    for (name, text) in files {
        let p = tree.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    std::fs::create_dir_all(&tree).unwrap();
    let diff_path = d.path().join("x.patch");
    std::fs::write(&diff_path, diff).unwrap();
    let gnu = gnu(&tree, &diff_path);
    let ours = Patch::parse(diff);
    let why = format!("GNU: {}\nours: {:?}", gnu.1, ours.as_ref().err());
    (gnu.0, ours.is_ok(), why)
}

fn gnu(tree: &Path, diff: &Path) -> (bool, String) {
    let out = Command::new("patch")
        .args(["--dry-run", "-p1", "--batch", "--forward", "-d"])
        .arg(tree)
        .arg("-i")
        .arg(diff)
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn agree_accept(files: &[(&str, &str)], diff: &str) {
    let (g, o, why) = both(files, diff);
    assert!(g && o, "expected both to accept\n{diff}\n{why}");
}

fn agree_refuse(files: &[(&str, &str)], diff: &str) {
    let (g, o, why) = both(files, diff);
    assert!(!g && !o, "expected both to refuse\n{diff}\n{why}");
}

const C: &str = "int a;\n\tint b;\n\n\tint c;\nint d;\n";

#[test]
fn blank_and_tab_context_lines_without_the_leading_space() {
    // The shape of a mailer-mangled patch: a blank context line is an empty
    // line, and context lines that start with a tab lost their space.
    let diff = "diff --git a/net/f.c b/net/f.c\nindex 1111111..2222222 100644\n\
                --- a/net/f.c\n+++ b/net/f.c\n@@ -1,5 +1,6 @@ void f(void)\n int a;\n\
                \tint b;\n\n+\tint bb;\n\tint c;\n int d;\n";
    agree_accept(&[("net/f.c", C)], diff);
    let p = Patch::parse(diff).unwrap();
    let h = &p.files[0].hunks[0];
    assert_eq!(h.lines[1], " \tint b;");
    assert_eq!(h.lines[2], " ");
    // `=` also stands for a context line.
    let diff = "--- a/net/f.c\n+++ b/net/f.c\n@@ -1,2 +1,3 @@\n int a;\n=\tint b;\n+x\n";
    agree_accept(&[("net/f.c", C)], diff);
}

#[test]
fn no_newline_at_end_of_file() {
    let files = [("f.c", "a\nb")];
    let diff = "--- a/f.c\n+++ b/f.c\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n";
    agree_accept(&files, diff);
    let diff = "--- a/f.c\n+++ b/f.c\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n";
    agree_accept(&files, diff);
}

#[test]
fn omitted_counts() {
    agree_accept(
        &[("f.c", "a\n")],
        "--- a/f.c\n+++ b/f.c\n@@ -1 +1 @@\n-a\n+b\n",
    );
    agree_accept(
        &[("f.c", "a\n")],
        "--- a/f.c\n+++ b/f.c\n@@ -1 +1,2 @@\n a\n+b\n",
    );
}

#[test]
fn git_headers_with_index_and_mode_lines() {
    let diff = "diff --git a/f.c b/f.c\nold mode 100644\nnew mode 100755\nindex 1234567..89abcde\n\
                --- a/f.c\n+++ b/f.c\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n\
                diff --git a/g.c b/g.c\nindex 1234567..89abcde 100644\n--- a/g.c\n+++ b/g.c\n@@ -1 +1 @@\n-x\n+y\n";
    agree_accept(&[("f.c", "a\nb\n"), ("g.c", "x\n")], diff);
    let p = Patch::parse(diff).unwrap();
    assert_eq!(p.files.len(), 2);
    assert_eq!(p.files[1].path, "g.c");
}

#[test]
fn creation_and_deletion() {
    let diff = "diff --git a/new.c b/new.c\nnew file mode 100644\nindex 0000000..1111111\n\
                --- /dev/null\n+++ b/new.c\n@@ -0,0 +1,2 @@\n+a\n+b\n";
    agree_accept(&[("f.c", "x\n")], diff);
    assert_eq!(Patch::parse(diff).unwrap().files[0].path, "new.c");
    let diff = "diff --git a/f.c b/f.c\ndeleted file mode 100644\nindex 1111111..0000000\n\
                --- a/f.c\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-x\n-y\n";
    agree_accept(&[("f.c", "x\ny\n")], diff);
    assert_eq!(Patch::parse(diff).unwrap().files[0].path, "f.c");
}

#[test]
fn crlf_line_endings() {
    let diff = "--- a/f.c\r\n+++ b/f.c\r\n@@ -1,2 +1,2 @@\r\n a\r\n-b\r\n+c\r\n";
    agree_accept(&[("f.c", "a\nb\n")], diff);
    assert_eq!(Patch::parse(diff).unwrap().files[0].path, "f.c");
}

#[test]
fn trailing_garbage_and_mail_prose() {
    // format-patch output: mail headers, a `---` diffstat separator, a
    // signature after the last hunk (`-- ` starts with a minus).
    let diff = "From 1 Mon Sep 17 00:00:00 2001\nSubject: [PATCH] x\n\n--- a note, not a header\n\
                ---\n f.c | 2 +-\n\n--- a/f.c\n+++ b/f.c\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n-- \n2.39.2\n\ngarbage\n";
    agree_accept(&[("f.c", "a\nb\n")], diff);
}

#[test]
fn timestamps_after_file_names() {
    let diff = "--- a/f.c\t2024-01-02 03:04:05.000000000 +0000\n+++ b/f.c\t2024-01-02 03:04:06.000000000 +0000\n\
                @@ -1,2 +1,2 @@\n a\n-b\n+c\n";
    agree_accept(&[("f.c", "a\nb\n")], diff);
    assert_eq!(Patch::parse(diff).unwrap().files[0].path, "f.c");
    let diff = diff.replace('\t', " ");
    agree_accept(&[("f.c", "a\nb\n")], &diff);
    assert_eq!(Patch::parse(&diff).unwrap().files[0].path, "f.c");
}

#[test]
fn both_refuse_malformed_hunks() {
    // A line that is none of ' ', '-', '+', '\' inside a hunk.
    agree_refuse(
        &[("f.c", "a\nb\nc\n")],
        "--- a/f.c\n+++ b/f.c\n@@ -1,3 +1,3 @@\n a\nXb\n c\n",
    );
    // Counts larger than the body.
    agree_refuse(
        &[("f.c", "a\nb\nc\n")],
        "--- a/f.c\n+++ b/f.c\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n@@ -5,1 +5,1 @@\n-x\n+y\n",
    );
    // No diff at all.
    agree_refuse(&[("f.c", "a\n")], "hello\nworld\n");
}

#[test]
fn chopped_trailing_blank_context_at_end_of_patch() {
    // GNU patch puts back up to 3 blank context lines an editor stripped
    // from the end of the file, on both sides equally.
    let files = [("f.c", "a\nb\n\n\n\n")];
    for counts in ["-1,3 +1,3", "-1,5 +1,5"] {
        agree_accept(
            &files,
            &format!("--- a/f.c\n+++ b/f.c\n@@ {counts} @@\n a\n-b\n+c\n"),
        );
    }
    for counts in ["-1,6 +1,6", "-1,3 +1,2", "-1,2 +1,3"] {
        agree_refuse(
            &files,
            &format!("--- a/f.c\n+++ b/f.c\n@@ {counts} @@\n a\n-b\n+c\n"),
        );
    }
    // Not before another hunk.
    agree_refuse(
        &files,
        "--- a/f.c\n+++ b/f.c\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n@@ -4,1 +4,1 @@\n-\n+d\n",
    );
}

#[test]
fn git_sections_without_hunks_and_headers_without_hunks() {
    let files = [("f.c", "a\nb\n"), ("g.c", "x\n")];
    // Mode change and rename only: GNU patch reports each as a file.
    let diff = "diff --git a/f.c b/f.c\nold mode 100644\nnew mode 100755\n\
                diff --git a/g.c b/h.c\nsimilarity index 100%\nrename from g.c\nrename to h.c\n";
    agree_accept(&files, diff);
    let p = Patch::parse(diff).unwrap();
    let paths: Vec<_> = p.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["f.c", "h.c"]);
    // A `---`/`+++` pair no hunk follows is skipped.
    let diff = "--- a/g.c\n+++ b/g.c\n--- a/f.c\n+++ b/f.c\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n";
    agree_accept(&files, diff);
    assert_eq!(Patch::parse(diff).unwrap().files.len(), 1);
    // ... and alone it is no diff at all.
    agree_refuse(&files, "--- a/g.c\n+++ b/g.c\n");
}
