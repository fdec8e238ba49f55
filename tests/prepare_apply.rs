//! Patch application: every patch is checked (in order, each on top of the
//! ones before) before the tree is touched; a patch that does not apply
//! fails naming the patch, the file and the hunk's @@ line, and leaves the
//! tree exactly as it was. Uses the real GNU patch.

use khotfix::prepare::apply::{apply, check, ApplyError};
use std::path::{Path, PathBuf};

const EST_C: &str = "\
#include <linux/kernel.h>
#include <linux/jiffies.h>

static void estimation_timer(struct timer_list *t)
{
\tstruct netns_ipvs *ipvs = from_timer(ipvs, t, est_timer);

\tspin_lock(&ipvs->est_lock);
\twalk_estimators(ipvs);
\tspin_unlock(&ipvs->est_lock);
\tmod_timer(&ipvs->est_timer, jiffies + 2 * HZ);
}

int ip_vs_estimator_net_init(struct netns_ipvs *ipvs)
{
\tINIT_LIST_HEAD(&ipvs->est_list);
\tspin_lock_init(&ipvs->est_lock);
\ttimer_setup(&ipvs->est_timer, estimation_timer, 0);
\tmod_timer(&ipvs->est_timer, jiffies + 2 * HZ);
\treturn 0;
}
";

/// A tree with one file, and a directory for patches.
fn tree() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("linux");
    std::fs::create_dir_all(t.join("net/netfilter/ipvs")).unwrap();
    std::fs::write(t.join("net/netfilter/ipvs/ip_vs_est.c"), EST_C).unwrap();
    (d, t)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const P1: &str = "\
Subject: ipvs: skip the walk

--- a/net/netfilter/ipvs/ip_vs_est.c
+++ b/net/netfilter/ipvs/ip_vs_est.c
@@ -6,7 +6,8 @@ static void estimation_timer(struct timer_list *t)
 \tstruct netns_ipvs *ipvs = from_timer(ipvs, t, est_timer);
 
 \tspin_lock(&ipvs->est_lock);
-\twalk_estimators(ipvs);
+\tif (0)
+\t\twalk_estimators(ipvs);
 \tspin_unlock(&ipvs->est_lock);
 \tmod_timer(&ipvs->est_timer, jiffies + 2 * HZ);
 }
";

/// Edits a line P1 added: applies only on top of P1.
const P2: &str = "\
--- a/net/netfilter/ipvs/ip_vs_est.c
+++ b/net/netfilter/ipvs/ip_vs_est.c
@@ -6,8 +6,8 @@ static void estimation_timer(struct timer_list *t)
 \tstruct netns_ipvs *ipvs = from_timer(ipvs, t, est_timer);
 
 \tspin_lock(&ipvs->est_lock);
-\tif (0)
+\tif (ipvs->enable < 0)
 \t\twalk_estimators(ipvs);
 \tspin_unlock(&ipvs->est_lock);
 \tmod_timer(&ipvs->est_timer, jiffies + 2 * HZ);
 }
";

/// Hunk 1 applies, hunk 2 (its @@ on line 15 of the file) does not.
const BAD: &str = "\
Subject: two hunks, the second against code that is not there

--- a/net/netfilter/ipvs/ip_vs_est.c
+++ b/net/netfilter/ipvs/ip_vs_est.c
@@ -1,3 +1,4 @@
 #include <linux/kernel.h>
 #include <linux/jiffies.h>
+#include <linux/slab.h>
 
@@ -16,6 +17,6 @@ int ip_vs_estimator_net_init(struct netns_ipvs *ipvs)
 \tINIT_LIST_HEAD(&ipvs->est_list);
 \tspin_lock_init(&ipvs->est_lock);
-\ttimer_setup(&ipvs->est_timer, estimation_timer_v2, 0);
+\ttimer_setup(&ipvs->est_timer, estimation_timer_v3, 0);
 \tmod_timer(&ipvs->est_timer, jiffies + 2 * HZ);
 \treturn 0;
 }
";

fn read(t: &Path) -> String {
    std::fs::read_to_string(t.join("net/netfilter/ipvs/ip_vs_est.c")).unwrap()
}

#[test]
fn series_applies_in_order() {
    let (d, t) = tree();
    let p1 = write(d.path(), "1.patch", P1);
    let p2 = write(d.path(), "2.patch", P2);
    // P2 alone does not apply to the pristine tree ...
    let e = check(&t, std::slice::from_ref(&p2)).unwrap_err();
    assert!(matches!(e, ApplyError::HunkFailed { .. }), "{e}");
    // ... but the series checks, in order, without touching the tree.
    let r = check(&t, &[p1.clone(), p2.clone()]).unwrap();
    assert!(!r.applied);
    assert_eq!(read(&t), EST_C, "check must not modify the tree");
    let r = apply(&t, &[p1, p2]).unwrap();
    assert!(r.applied);
    assert_eq!(r.patches.len(), 2);
    assert_eq!(r.patches[0].files[0].path, "net/netfilter/ipvs/ip_vs_est.c");
    let now = read(&t);
    assert!(
        now.contains("\tif (ipvs->enable < 0)\n\t\twalk_estimators(ipvs);"),
        "{now}"
    );
    // No backup or reject files left behind.
    let names: Vec<_> = std::fs::read_dir(t.join("net/netfilter/ipvs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn failing_hunk_is_named_and_tree_untouched() {
    let (d, t) = tree();
    let good = write(d.path(), "1-good.patch", P1);
    let bad = write(d.path(), "2-bad.patch", BAD);
    let e = apply(&t, &[good, bad.clone()]).unwrap_err();
    match &e {
        ApplyError::HunkFailed {
            patch,
            file,
            hunk,
            line,
            ..
        } => {
            assert_eq!(patch, &bad);
            assert_eq!(file, "net/netfilter/ipvs/ip_vs_est.c");
            assert_eq!(*hunk, 2);
            assert_eq!(*line, 10, "line of the second @@ header in the patch");
            assert!(BAD.lines().nth(line - 1).unwrap().starts_with("@@ -16,6"));
        }
        other => panic!("wrong error: {other}"),
    }
    let msg = e.to_string();
    assert!(!msg.contains('\n'));
    assert!(
        msg.starts_with(&format!(
            "{}:10: hunk #2 of net/netfilter/ipvs/ip_vs_est.c does not apply",
            bad.display()
        )),
        "{msg}"
    );
    // The good first patch was not applied either: nothing is half-done.
    assert_eq!(read(&t), EST_C);
}

#[test]
fn missing_file_is_named() {
    let (d, t) = tree();
    let p = write(
        d.path(),
        "m.patch",
        &P1.replace("ip_vs_est.c", "ip_vs_nope.c"),
    );
    let e = check(&t, std::slice::from_ref(&p)).unwrap_err();
    match &e {
        ApplyError::MissingFile {
            patch, file, line, ..
        } => {
            assert_eq!(patch, &p);
            assert_eq!(file, "net/netfilter/ipvs/ip_vs_nope.c");
            assert_eq!(*line, 3);
        }
        other => panic!("wrong error: {other}"),
    }
}

#[test]
fn already_applied_is_reported() {
    let (d, t) = tree();
    let p = write(d.path(), "1.patch", P1);
    apply(&t, std::slice::from_ref(&p)).unwrap();
    let e = apply(&t, &[p]).unwrap_err();
    assert!(matches!(e, ApplyError::AlreadyApplied { .. }), "{e}");
    assert!(e.to_string().contains("already applied"));
}

#[test]
fn offsets_are_reported() {
    let (d, t) = tree();
    // Shift the code down three lines: the hunk applies with an offset.
    std::fs::write(
        t.join("net/netfilter/ipvs/ip_vs_est.c"),
        format!("/* a */\n/* b */\n/* c */\n{EST_C}"),
    )
    .unwrap();
    let p = write(d.path(), "1.patch", P1);
    let r = apply(&t, &[p]).unwrap();
    let notes = &r.patches[0].files[0].notes;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(
        (
            notes[0].hunk,
            notes[0].offset,
            notes[0].fuzz,
            notes[0].header_line
        ),
        (1, 3, 0, 5)
    );
}

#[test]
fn new_files_are_created() {
    let (d, t) = tree();
    let p = write(
        d.path(),
        "n.patch",
        "--- /dev/null\n+++ b/net/netfilter/ipvs/new.c\n@@ -0,0 +1,2 @@\n+/* new */\n+int x;\n",
    );
    apply(&t, &[p]).unwrap();
    assert_eq!(
        std::fs::read_to_string(t.join("net/netfilter/ipvs/new.c")).unwrap(),
        "/* new */\nint x;\n"
    );
}

#[test]
fn git_rename_is_checked_and_applied() {
    let (d, t) = tree();
    let p = write(
        d.path(),
        "r.patch",
        "diff --git a/net/netfilter/ipvs/ip_vs_est.c b/net/netfilter/ipvs/ip_vs_est2.c\n\
         similarity index 90%\n\
         rename from net/netfilter/ipvs/ip_vs_est.c\n\
         rename to net/netfilter/ipvs/ip_vs_est2.c\n\
         --- a/net/netfilter/ipvs/ip_vs_est.c\n\
         +++ b/net/netfilter/ipvs/ip_vs_est2.c\n\
         @@ -1,3 +1,3 @@\n #include <linux/kernel.h>\n-#include <linux/jiffies.h>\n+#include <linux/jiffies.h> /* renamed */\n \n",
    );
    check(&t, std::slice::from_ref(&p)).unwrap();
    assert_eq!(read(&t), EST_C);
    apply(&t, &[p]).unwrap();
    let moved = std::fs::read_to_string(t.join("net/netfilter/ipvs/ip_vs_est2.c")).unwrap();
    assert!(moved.contains("/* renamed */"));
    assert!(!t.join("net/netfilter/ipvs/ip_vs_est.c").exists());
}

#[test]
fn single_patch_check_is_a_dry_run_that_names_the_failing_hunk() {
    // The fast path (`patch --dry-run` on the tree itself) reports like the
    // scratch-copy path and leaves nothing behind.
    let (d, t) = tree();
    let bad = write(d.path(), "bad.patch", BAD);
    let e = check(&t, std::slice::from_ref(&bad)).unwrap_err();
    match &e {
        ApplyError::HunkFailed { hunk, line, .. } => assert_eq!((*hunk, *line), (2, 10)),
        other => panic!("wrong error: {other}"),
    }
    let good = write(d.path(), "good.patch", P1);
    let r = check(&t, std::slice::from_ref(&good)).unwrap();
    assert_eq!(r.patches[0].files[0].path, "net/netfilter/ipvs/ip_vs_est.c");
    assert_eq!(read(&t), EST_C, "check must not modify the tree");
    let names: Vec<_> = std::fs::read_dir(t.join("net/netfilter/ipvs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn one_patch_editing_a_file_twice_is_checked_in_order() {
    // Two sections for the same file: the second edits a line the first
    // added. A dry run would check it against the unpatched file and fail;
    // the check must see the first section's result.
    let (d, t) = tree();
    let both = P1
        .lines()
        .filter(|l| !l.starts_with("Subject"))
        .chain(P2.lines())
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let p = write(d.path(), "twice.patch", &both);
    let r = check(&t, std::slice::from_ref(&p)).unwrap();
    assert_eq!(r.patches[0].files.len(), 2);
    assert_eq!(read(&t), EST_C);
}
