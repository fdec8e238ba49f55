//! `khotfix preflight --tree DIR`: the series is checked against a local
//! kernel tree before anything is fetched. Each case is also run through
//! GNU `patch --dry-run -p1` on the same tree, and the two must agree.

mod support;

use support::bin::khotfix_in;

use std::path::{Path, PathBuf};
use std::process::Command;

const X_C: &str = "int a;\nint b;\nint c;\n\nstatic void f(void)\n{\n\tg();\n}\n";

/// A small kernel-shaped tree: net/x.c, net/y.c, include/z.h.
fn tree(dir: &Path) -> PathBuf {
    let t = dir.join("linux");
    std::fs::create_dir_all(t.join("net")).unwrap();
    std::fs::create_dir_all(t.join("include")).unwrap();
    std::fs::write(t.join("net/x.c"), X_C).unwrap();
    std::fs::write(t.join("net/y.c"), "void y(void)\n{\n}\n").unwrap();
    std::fs::write(t.join("include/z.h"), "#define Z 1\n").unwrap();
    t
}

const GOOD: &str = "--- a/net/x.c\n+++ b/net/x.c\n@@ -5,4 +5,4 @@\n static void f(void)\n {\n-\tg();\n+\tg2();\n }\n";
const BAD_HUNK: &str =
    "--- a/net/x.c\n+++ b/net/x.c\n@@ -1,3 +1,3 @@\n int a;\n-int q;\n+long q;\n int c;\n";
const SECOND_BAD: &str = "--- a/net/y.c\n+++ b/net/y.c\n@@ -1,3 +1,4 @@\n void y(void)\n {\n+\tz();\n }\n--- a/net/x.c\n+++ b/net/x.c\n@@ -1,2 +1,2 @@\n int a;\n-int b;\n+int bb;\n@@ -5,3 +5,3 @@\n static void f(void)\n {\n-\tnope();\n+\tg2();\n";
const MISSING: &str = "--- a/net/missing.c\n+++ b/net/missing.c\n@@ -1,1 +1,1 @@\n-a\n+b\n";
const NEW_FILE: &str = "--- /dev/null\n+++ b/net/new.c\n@@ -0,0 +1,2 @@\n+void n(void)\n+{}\n";

/// Does GNU `patch --dry-run -p1` accept `patch` on `tree`?
fn gnu_accepts(tree: &Path, patch: &Path) -> bool {
    Command::new("patch")
        .args(["--dry-run", "-p1", "--batch", "--forward", "-s", "-d"])
        .arg(tree)
        .arg("-i")
        .arg(std::path::absolute(patch).unwrap())
        .env("LC_ALL", "C")
        .output()
        .unwrap()
        .status
        .success()
}

/// Write `text` as `name` in `dir`, run preflight on it from `dir` with a
/// relative `--patch` and `--tree`, and compare with GNU patch.
fn check(name: &str, text: &str) -> (i32, String) {
    let d = tempfile::tempdir().unwrap();
    let t = tree(d.path());
    std::fs::write(d.path().join(name), text).unwrap();
    let (code, out, err) = khotfix_in(&["preflight", "--tree", "linux", "--patch", name], d.path());
    let gnu = gnu_accepts(&t, &d.path().join(name));
    assert_eq!(
        code == 0,
        gnu,
        "{name}: khotfix exit {code}, GNU patch accepts: {gnu}\n{out}{err}"
    );
    assert!(code == 0 || code == 1, "{name}: {code} {err}");
    // The tree is never modified.
    assert_eq!(std::fs::read_to_string(t.join("net/x.c")).unwrap(), X_C);
    assert!(!t.join("net/new.c").exists());
    (code, out)
}

#[test]
fn good_patch_applies_from_a_relative_path() {
    let (code, out) = check("good.patch", GOOD);
    assert_eq!(code, 0);
    assert!(out.is_empty(), "{out}");
    let (code, _) = check("new.patch", NEW_FILE);
    assert_eq!(code, 0);
}

#[test]
fn failing_hunk_is_one_line_naming_patch_file_and_hunk() {
    let (code, out) = check("bad.patch", BAD_HUNK);
    assert_eq!(code, 1);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with("bad.patch:3: hunk #1 of net/x.c does not apply"),
        "{out}"
    );
    // The second file's second hunk: the line of that hunk's header.
    let (code, out) = check("second.patch", SECOND_BAD);
    assert_eq!(code, 1);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with("second.patch:14: hunk #2 of net/x.c does not apply"),
        "{out}"
    );
}

#[test]
fn missing_file_and_already_applied() {
    let (code, out) = check("missing.patch", MISSING);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("missing.patch:1: net/missing.c: no such file"),
        "{out}"
    );
    // GOOD reversed: the tree already has what it adds.
    let reversed = GOOD.replace("-\tg();\n+\tg2();", "-\tg2();\n+\tg();");
    let (code, out) = check("applied.patch", &reversed);
    assert_eq!(code, 1);
    assert!(out.contains("already applied"), "{out}");
}

#[test]
fn recipe_patches_relative_to_the_recipe_and_cwd_elsewhere() {
    let d = tempfile::tempdir().unwrap();
    tree(d.path());
    let r = d.path().join("recipes");
    std::fs::create_dir_all(&r).unwrap();
    std::fs::write(r.join("bad.patch"), BAD_HUNK).unwrap();
    std::fs::write(
        r.join("r.toml"),
        "[hotfix]\nid = 1\nname = \"x\"\nsummary = \"s\"\ndescription = \"d\"\nversion = \"1.0\"\n\n\
         [[target]]\nname = \"el7\"\ndistro = \"centos7\"\nkernels = [\"3.10.0-1062.9.1.el7.x86_64\"]\n\
         patches = [\"bad.patch\"]\n",
    )
    .unwrap();
    let sub = d.path().join("elsewhere");
    std::fs::create_dir_all(&sub).unwrap();
    let (code, out, err) = khotfix_in(
        &["preflight", "../recipes/r.toml", "--tree", "../linux"],
        &sub,
    );
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("bad.patch:3: hunk #1 of net/x.c does not apply"),
        "{out}"
    );
    // Fixed patch: passes.
    std::fs::write(r.join("bad.patch"), GOOD).unwrap();
    let (code, out, err) = khotfix_in(
        &["preflight", "../recipes/r.toml", "--tree", "../linux"],
        &sub,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("applies to ../linux"), "{err}");
}

#[test]
fn bad_tree_is_bad_input() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("good.patch"), GOOD).unwrap();
    let (code, _, err) = khotfix_in(
        &[
            "preflight",
            "--tree",
            "nonexistent",
            "--patch",
            "good.patch",
        ],
        d.path(),
    );
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--tree nonexistent: not a directory"), "{err}");
}
