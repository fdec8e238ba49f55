//! `status` and `check --format prometheus` on fake roots, through both
//! binaries (`khotfix node`, `khotfix-node`), which must print the same.
//! Hostile host values (a livepatch directory named with quotes and a line
//! break, a recipe file name with `"` and `\`) stay on their line and the
//! metrics still parse with prometheus_client's text-format parser.

mod support;

use support::node_bins;

use serde_json::Value;
use std::path::Path;
use std::process::Command;

const RECIPE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/node/22519882.toml");
const CT4: &str = "/sys/fs/bpf/tc/globals/cilium_ct4_global";
const LP: &str = "/sys/kernel/livepatch/kpatch_22519882";

fn write(root: &Path, host: &str, t: &str) {
    let p = root.join(host.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, t).unwrap();
}

fn fake_root(rel: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "/proc/sys/kernel/osrelease", &format!("{rel}\n"));
    write(t.path(), "/proc/modules", "ext4 1003520 1 - Live 0x0\n");
    write(t.path(), CT4, "");
    t
}

/// Samples parsed by prometheus_client: (name, labels, value).
fn parse(metrics: &str) -> Vec<(String, Value, f64)> {
    use std::io::Write;
    let mut child = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(
            "import sys, json\n\
             from prometheus_client.parser import text_string_to_metric_families\n\
             print(json.dumps([[s.name, s.labels, s.value] for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]))\n",
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 with python3-prometheus-client");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "prometheus_client: {}\n{metrics}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn sample(s: &[(String, Value, f64)], name: &str, id: &str) -> f64 {
    let v: Vec<f64> = s
        .iter()
        .filter(|(n, l, _)| n == name && l["id"] == id)
        .map(|x| x.2)
        .collect();
    assert_eq!(v.len(), 1, "{name}{{id={id}}}: {s:?}");
    v[0]
}

#[test]
fn prometheus_format_gives_one_series_per_verdict() {
    let cases = [
        (
            "needs",
            "5.10.134-18.al8.x86_64",
            None,
            1,
            [1.0, 0.0, 0.0, 1.0],
        ),
        (
            "fixed",
            "5.10.134-18.al8.x86_64",
            Some("0"),
            0,
            [0.0, 1.0, 0.0, 1.0],
        ),
        (
            "applying",
            "5.10.134-18.al8.x86_64",
            Some("1"),
            0,
            [0.0, 1.0, 0.0, 1.0],
        ),
        (
            "outside",
            "5.10.134-19.2.al8.x86_64",
            None,
            0,
            [0.0, 0.0, 0.0, 0.0],
        ),
        (
            "unfixable",
            "5.10.134-18.0.1.lifsea8.x86_64",
            None,
            3,
            [0.0, 0.0, 1.0, 1.0],
        ),
    ];
    for (what, rel, transition, code, want) in cases {
        let t = fake_root(rel);
        if let Some(tr) = transition {
            write(t.path(), &format!("{LP}/enabled"), "1\n");
            write(t.path(), &format!("{LP}/transition"), &format!("{tr}\n"));
        }
        let out = node_bins::both()
            .args([
                "check",
                "--format",
                "prometheus",
                "--recipe",
                RECIPE,
                "--root",
            ])
            .arg(t.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{what}");
        let s = parse(&String::from_utf8_lossy(&out.stdout));
        let names = [
            "khotfix_hotfix_needed",
            "khotfix_hotfix_loaded",
            "khotfix_node_unfixable",
            "khotfix_hotfix_affected",
        ];
        for (n, w) in names.iter().zip(want) {
            assert_eq!(sample(&s, n, "22519882"), w, "{what}: {n}");
        }
        let kernel = s.iter().find(|x| x.0 == "khotfix_hotfix_needed").unwrap();
        assert_eq!(kernel.1["kernel"], rel, "{what}");
    }
}

#[test]
fn prometheus_format_covers_every_installed_recipe_and_writes_atomically() {
    let t = fake_root("5.10.134-18.al8.x86_64");
    let base = std::fs::read_to_string(RECIPE).unwrap();
    write(t.path(), "/etc/khotfix/recipes/22519882.toml", &base);
    let other = base.replace("id = 22519882", "id = 7");
    assert_ne!(other, base);
    write(t.path(), "/etc/khotfix/recipes/7.toml", &other);
    // A recipe that does not load, under a hostile name: an error series.
    let hostile = "/etc/khotfix/recipes/x\"\\ y.toml";
    write(t.path(), hostile, "[hotfix]\nid = \"not a number\"\n");
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("textfile/khotfix.prom");
    let out = node_bins::both()
        .args(["check", "--format", "prometheus", "--root"])
        .arg(t.path())
        .arg("--output")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a recipe failed to load");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("khotfix: error: ") && err.contains("y.toml"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    let text = std::fs::read_to_string(&file).unwrap();
    let leftovers = std::fs::read_dir(file.parent().unwrap()).unwrap().count();
    assert_eq!(
        leftovers, 1,
        "a temporary file was left next to the metrics"
    );
    let s = parse(&text);
    assert_eq!(sample(&s, "khotfix_hotfix_needed", "22519882"), 1.0);
    assert_eq!(sample(&s, "khotfix_hotfix_needed", "7"), 1.0);
    let errors: Vec<_> = s.iter().filter(|x| x.0 == "khotfix_check_error").collect();
    assert_eq!(errors.len(), 1, "{s:?}");
    let label = errors[0].1["recipe"].as_str().unwrap();
    assert!(
        label.starts_with("/etc/khotfix/recipes/x") && label.ends_with(" y.toml"),
        "{label}"
    );
}

#[test]
fn status_lists_livepatches_and_marks_hostile_names() {
    let t = fake_root("5.10.134-18.al8.x86_64");
    write(t.path(), &format!("{LP}/enabled"), "1\n");
    write(t.path(), &format!("{LP}/transition"), "0\n");
    write(t.path(), &format!("{LP}/vmlinux/patched"), "1\n");
    write(t.path(), &format!("{LP}/bpf/patched"), "0\n");
    let odd = "/sys/kernel/livepatch/evil\"\nname";
    write(t.path(), &format!("{odd}/enabled"), "0\n");
    let out = node_bins::both()
        .args(["status", "--root"])
        .arg(t.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Running kernel: 5.10.134-18.al8.x86_64\n"),
        "{text}"
    );
    assert!(
        text.contains("  kpatch_22519882 [hotfix 22519882] enabled=1 transition=0\n    bpf patched=0\n    vmlinux patched=1\n"),
        "{text}"
    );
    assert!(
        text.contains("  evil\\\"\\nname enabled=0 transition=?\n"),
        "{text}"
    );
    assert!(text.contains("no rpm database on the host"), "{text}");
    let out = node_bins::both()
        .args(["status", "--json", "--root"])
        .arg(t.path())
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let lp = &v["livepatches"][1];
    assert_eq!(lp["name"], "kpatch_22519882");
    assert_eq!(lp["hotfix_id"], 22519882);
    assert_eq!(lp["enabled"], true);
    assert_eq!(lp["transition"], false);
    assert_eq!(lp["objects"][1]["name"], "vmlinux");
    assert_eq!(lp["objects"][1]["patched"], true);
    assert_eq!(v["packages"], Value::Null);
}

#[test]
fn khotfix_node_refuses_bad_arguments_in_one_line() {
    for args in [
        vec!["check", "--bogus"],
        vec!["check", "--json", "--format", "text"],
        vec!["check", "--format", "yaml"],
        vec!["check", "--root"],
        vec!["apply", "--timeout", "soon"],
        vec!["frobnicate"],
        vec![],
    ] {
        let out = Command::new(node_bins::KHOTFIX_NODE)
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("khotfix-node: error: "), "{args:?}: {err}");
    }
    let help = Command::new(node_bins::KHOTFIX_NODE)
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("khotfix-node status"));
}
