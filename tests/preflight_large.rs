//! Large inputs: preflight is linear in hunk length (a 100k-line hunk and a
//! 100k-deep nesting pass; the old reading was quadratic: 55 s at 100k), and
//! inputs over the size limits are refused with one line naming the patch and
//! the limit (exit 2). No timings are asserted; a generous guard catches a hang.

mod support;

use support::bin::khotfix;

use khotfix::patchfile::{MAX_FILES, MAX_HUNK_LINES, MAX_PATCH_BYTES};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Run `khotfix preflight --patch NAME` in `dir`; kill it after `guard`.
fn preflight(dir: &Path, name: &str, guard: Duration) -> (i32, String, String) {
    let mut child = khotfix()
        .args(["preflight", "--patch", name])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > guard {
            child.kill().unwrap();
            panic!("preflight on {name} still running after {guard:?}: hung or quadratic");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One hunk adding `n` lines made by `line(i)` inside a function.
fn one_hunk(n: usize, line: impl Fn(usize) -> String) -> String {
    let mut s = format!(
        "--- a/net/x.c\n+++ b/net/x.c\n@@ -1,3 +1,{} @@\n static void f(void)\n {{\n",
        n + 3
    );
    for i in 0..n {
        s.push('+');
        s.push_str(&line(i));
        s.push('\n');
    }
    s.push_str(" }\n");
    s
}

const GUARD: Duration = Duration::from_secs(300);

#[test]
fn hundred_thousand_line_hunk_passes() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("big.patch"),
        one_hunk(100_000, |i| format!("\tg{i}();")),
    )
    .unwrap();
    let (code, out, err) = preflight(d.path(), "big.patch", GUARD);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("1 patch(es): 0 error(s), 0 warning(s)"),
        "{err}"
    );
}

#[test]
fn hundred_thousand_deep_nesting_passes() {
    let d = tempfile::tempdir().unwrap();
    let n = 100_000;
    let text = one_hunk(n, |i| {
        if i < n / 2 {
            "\tif (x) {".to_string()
        } else {
            "\t}".to_string()
        }
    });
    std::fs::write(d.path().join("deep.patch"), text).unwrap();
    let (code, out, err) = preflight(d.path(), "deep.patch", GUARD);
    assert_eq!(code, 0, "{out}{err}");
}

fn assert_refused(dir: &Path, name: &str, limit: &str) {
    let (code, out, err) = preflight(dir, name, GUARD);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(name) && err.contains(limit), "{err}");
}

#[test]
fn hunk_over_the_line_limit_is_refused_before_reading_it() {
    let d = tempfile::tempdir().unwrap();
    let text = format!(
        "--- a/x.c\n+++ b/x.c\n@@ -1,1 +1,{} @@\n-a\n+b\n",
        MAX_HUNK_LINES
    );
    std::fs::write(d.path().join("long.patch"), text).unwrap();
    assert_refused(
        d.path(),
        "long.patch",
        &format!("over the limit of {MAX_HUNK_LINES} lines per hunk"),
    );
}

#[test]
fn patch_over_the_byte_limit_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let f = std::fs::File::create(d.path().join("huge.patch")).unwrap();
    f.set_len(MAX_PATCH_BYTES + 1).unwrap(); // sparse: no disk used
    drop(f);
    assert_refused(
        d.path(),
        "huge.patch",
        &format!("over the limit of {MAX_PATCH_BYTES} bytes"),
    );
}

#[test]
fn patch_over_the_file_limit_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..=MAX_FILES {
        text.push_str(&format!(
            "--- a/f{i}.c\n+++ b/f{i}.c\n@@ -1 +1 @@\n-a\n+b\n"
        ));
    }
    std::fs::write(d.path().join("wide.patch"), text).unwrap();
    assert_refused(
        d.path(),
        "wide.patch",
        &format!("over the limit of {MAX_FILES} files per patch"),
    );
}
