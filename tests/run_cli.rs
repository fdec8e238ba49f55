//! `khotfix run` as a command: exit code 2 with a one-line error for bad
//! input and nothing written; `--json` and `--report` for a run with no
//! matching kernels (exit 0, an empty but well-formed report).

mod support;

fn khotfix(args: &[&str], cwd: &std::path::Path) -> std::process::Output {
    support::bin::khotfix()
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

const REPO: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn bad_input_exits_2_with_one_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out_s = out.to_str().unwrap();
    let recipe = format!("{REPO}/recipes/ipvs-estimation-timer.toml");
    let kernels = format!("{REPO}/tests/data/kernels.txt");
    let bad_recipe = dir.path().join("bad.toml");
    std::fs::write(&bad_recipe, "[hotfix]\nid = -1\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["run", bad_recipe.to_str().unwrap(), "--out", out_s],
            "bad.toml:",
        ),
        (
            vec!["run", "/nonexistent/r.toml", "--out", out_s],
            "/nonexistent/r.toml",
        ),
        (
            vec![
                "run",
                &recipe,
                "--kernels",
                &kernels,
                "--job-index",
                "99",
                "--out",
                out_s,
            ],
            "--job-index 99 is out of range",
        ),
        (
            vec![
                "run",
                &recipe,
                "--kernels",
                &kernels,
                "--job-index",
                "0",
                "--expect-plan",
                "ffffffffffffffff",
                "--out",
                out_s,
            ],
            "the plan changed",
        ),
        (
            vec![
                "run",
                &recipe,
                "--kernels",
                &kernels,
                "--job-index",
                "0",
                "--expect-job",
                "nope",
                "--out",
                out_s,
            ],
            "nope was expected",
        ),
        (
            vec!["run", &recipe, "--target", "nosuch", "--out", out_s],
            "--target \"nosuch\"",
        ),
        (vec!["run", &recipe, "-j", "0", "--out", out_s], "-j 0"),
        (
            vec![
                "run",
                &recipe,
                "--kernels",
                &kernels,
                "--keys",
                "/nonexistent-keys",
                "--out",
                out_s,
            ],
            "/nonexistent-keys",
        ),
    ];
    for (args, want) in cases {
        let o = khotfix(&args, dir.path());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(
            err.trim_end()
                .lines()
                .filter(|l| l.starts_with("khotfix: error:"))
                .count(),
            1,
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            !out.join("jobs").exists(),
            "{args:?} left {}",
            out.display()
        );
    }
}

#[test]
fn empty_plan_gives_well_formed_json_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = format!("{REPO}/recipes/ipvs-estimation-timer.toml");
    let report = dir.path().join("summary.md");
    // No kernel list: the recipe's ranges match nothing.
    let o = khotfix(
        &[
            "run",
            &recipe,
            "--json",
            "--out",
            "out",
            "--report",
            report.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["passed"], 0);
    assert_eq!(v["failed"], 0);
    assert_eq!(v["jobs"].as_array().unwrap().len(), 0);
    assert_eq!(v["plan_digest"].as_str().unwrap().len(), 16);
    assert!(String::from_utf8_lossy(&o.stderr).contains("the plan has no jobs"));
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(md.starts_with("## khotfix run\n"), "{md}");
    assert!(md.contains("0 passed, 0 failed"), "{md}");
}
