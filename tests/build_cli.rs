//! `khotfix build` / `khotfix builder build` on bad input: one-line errors
//! naming what is wrong, exit code 2, no container started.

mod support;

fn khotfix(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut c = support::bin::khotfix();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn one_line_error(code: Option<i32>, err: &str, want: &str) {
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("khotfix: error: ") && err.contains(want),
        "expected {want:?} in {err:?}"
    );
}

#[test]
fn bad_inputs_fail_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("nope.toml");
    let (c, e) = khotfix(&["build", missing.to_str().unwrap()], &[]);
    one_line_error(c, &e, "nope.toml");

    let recipe = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/kbuild-recipe/recipe.toml"
    );
    let (c, e) = khotfix(&["build", recipe, "--kernel", "6.1.0-x-amd64"], &[]);
    one_line_error(c, &e, "invalid kernel release");

    let (c, e) = khotfix(
        &["build", recipe, "--kernel", "6.1.0-1-amd64"],
        &[("KHOTFIX_CONTAINER_ENGINE", "no-such-engine")],
    );
    one_line_error(c, &e, "container engine \"no-such-engine\" not found");

    let (c, e) = khotfix(&["build", recipe], &[("KHOTFIX_BUILD_TIMEOUT", "soon")]);
    one_line_error(c, &e, "KHOTFIX_BUILD_TIMEOUT");

    let cfg = d.path().join("config.toml");
    std::fs::write(&cfg, "[container]\nengine = 3\n").unwrap();
    let (c, e) = khotfix(
        &["build", recipe],
        &[("KHOTFIX_CONFIG", cfg.to_str().unwrap())],
    );
    one_line_error(c, &e, "config.toml");

    let (c, e) = khotfix(&["builder", "build", "nope"], &[]);
    one_line_error(c, &e, "unknown builder \"nope\"");

    let (c, e) = khotfix(&["builder", "build", "centos7"], &[]);
    one_line_error(c, &e, "--base IMAGE");

    // A kernel outside the recipe's range: no jobs.
    let (c, e) = khotfix(&["build", recipe, "--kernel", "5.10.0-30-amd64"], &[]);
    one_line_error(c, &e, "no jobs to build for kernel 5.10.0-30-amd64");
}
