//! `khotfix preflight RECIPE [--strict] [--json]`: output format and exit
//! codes (0 no errors, 1 findings at error level, 2 bad input).

mod support;

use support::bin::khotfix_in;

use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/preflight")
        .join(name)
}

/// A recipe in `dir` whose one kpatch target lists `patches` (copied next to it).
fn recipe(dir: &Path, patches: &[&str]) -> PathBuf {
    for p in patches {
        std::fs::copy(data(p), dir.join(p)).unwrap();
    }
    let list: Vec<String> = patches.iter().map(|p| format!("{p:?}")).collect();
    let text = format!(
        "[hotfix]\nid = 22519882\nname = \"ipvs-est\"\nsummary = \"IPVS estimation_timer jitter\"\n\
         description = \"Make estimation_timer a no-op.\"\nversion = \"1.0\"\n\n\
         [[target]]\nname = \"el7\"\ndistro = \"centos7\"\nkernels = [\"3.10.0-1062.9.1.el7.x86_64\"]\npatches = [{}]\n",
        list.join(", ")
    );
    let r = dir.join("recipe.toml");
    std::fs::write(&r, text).unwrap();
    r
}

#[test]
fn clean_recipe_exits_zero() {
    let d = tempfile::tempdir().unwrap();
    recipe(d.path(), &["clean.patch"]);
    let (code, out, err) = khotfix_in(&["preflight", "recipe.toml"], d.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("1 patch(es): 0 error(s), 0 warning(s)"),
        "{err}"
    );
}

#[test]
fn errors_exit_one_with_one_line_per_finding() {
    let d = tempfile::tempdir().unwrap();
    recipe(
        d.path(),
        &["clean.patch", "once-macro.patch", "header.patch"],
    );
    let (code, out, _) = khotfix_in(&["preflight", "recipe.toml"], d.path());
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("once-macro.patch:12: error: [once-macro] net/netfilter/ipvs/ip_vs_est.c: adds pr_warn_once()"), "{}", lines[0]);
    assert!(lines[0].contains(" — instead: "));
    assert!(
        lines[1].starts_with("header.patch:7: warning: [header] include/net/ip_vs.h: "),
        "{}",
        lines[1]
    );
}

#[test]
fn strict_turns_warnings_into_errors() {
    let d = tempfile::tempdir().unwrap();
    recipe(d.path(), &["header.patch"]);
    let (code, out, _) = khotfix_in(&["preflight", "recipe.toml"], d.path());
    assert_eq!(code, 0, "a warning alone passes: {out}");
    assert!(out.contains(": warning: [header]"));
    let (code, out, err) = khotfix_in(&["preflight", "--strict", "recipe.toml"], d.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(": error: [header]"), "{out}");
    assert!(err.contains("(--strict)"));
}

#[test]
fn json_output() {
    let d = tempfile::tempdir().unwrap();
    recipe(d.path(), &["data-layout.patch", "static-local.patch"]);
    let (code, out, _) = khotfix_in(&["preflight", "--json", "recipe.toml"], d.path());
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["errors"], 1);
    assert_eq!(v["warnings"], 1);
    let f = &v["findings"][0];
    assert_eq!(f["category"], "data-layout");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["file"], "net/netfilter/ipvs/ip_vs_est.c");
    assert!(f["line"].as_u64().unwrap() > 0);
    assert!(f["patch"].as_str().unwrap().ends_with("data-layout.patch"));
    assert!(!f["why"].as_str().unwrap().is_empty() && !f["instead"].as_str().unwrap().is_empty());
    assert_eq!(v["findings"][1]["category"], "static-local");
}

#[test]
fn bad_input_exits_two() {
    let d = tempfile::tempdir().unwrap();
    let (code, _, err) = khotfix_in(&["preflight", "missing.toml"], d.path());
    assert_eq!(code, 2);
    assert!(err.contains("missing.toml"), "{err}");
    // A recipe whose patch is not a diff.
    let r = recipe(d.path(), &["clean.patch"]);
    std::fs::write(d.path().join("clean.patch"), "hello\n").unwrap();
    let (code, _, err) = khotfix_in(&["preflight", r.to_str().unwrap()], d.path());
    assert_eq!(code, 2);
    assert!(
        err.contains("clean.patch") && err.contains("not a valid unified diff"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
