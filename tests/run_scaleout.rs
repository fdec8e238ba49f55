//! Scale-out outputs: `khotfix plan --format k8s` (an Indexed Job and a
//! suspended publish Job) and examples/github-actions.yml. Both are parsed
//! with a real YAML parser (python3-yaml, in .ci/packages.txt) and checked
//! for what makes them work: completions = jobs, the completion index fed to
//! `--job-index`, the plan digest guard, volumes, and the workflow's
//! plan → matrix → publish wiring.

mod support;

use khotfix::run::k8s::{manifests, to_yaml, K8sOptions};
use serde_json::Value;
use std::process::Command;

/// Parse multi-document YAML with python3's yaml.safe_load_all into JSON.
fn parse_yaml(text: &str) -> Vec<Value> {
    support::yaml::pyyaml(text).unwrap_or_else(|e| panic!("YAML did not parse: {e}\n{text}"))
}

fn khotfix(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = support::bin::khotfix();
    c.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn k8s_indexed_job_from_the_real_recipe() {
    let plan_json = khotfix(
        &[
            "plan",
            "--json",
            "--kernels",
            "tests/data/kernels.txt",
            "recipes/ipvs-estimation-timer.toml",
        ],
        &[],
    );
    assert!(
        plan_json.status.success(),
        "{}",
        String::from_utf8_lossy(&plan_json.stderr)
    );
    let plan: Value = serde_json::from_slice(&plan_json.stdout).unwrap();
    let n = plan["jobs"].as_array().unwrap().len();
    assert!(n >= 2, "{plan}");

    let o = khotfix(
        &[
            "plan",
            "--format",
            "k8s",
            "--kernels",
            "tests/data/kernels.txt",
            "recipes/ipvs-estimation-timer.toml",
        ],
        &[
            ("KHOTFIX_K8S_PARALLELISM", "3"),
            ("KHOTFIX_K8S_IMAGE", "registry.example/khotfix:1.0"),
            ("KHOTFIX_K8S_NAMESPACE", "kernel"),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let docs = parse_yaml(&text);
    assert_eq!(docs.len(), 2, "{text}");
    let (build, publish) = (&docs[0], &docs[1]);

    assert_eq!(build["kind"], "Job");
    assert_eq!(build["apiVersion"], "batch/v1");
    assert_eq!(build["metadata"]["namespace"], "kernel");
    assert_eq!(build["spec"]["completionMode"], "Indexed");
    assert_eq!(build["spec"]["completions"], n);
    assert_eq!(build["spec"]["parallelism"], 3);
    let pod = &build["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "registry.example/khotfix:1.0");
    assert_eq!(c["securityContext"]["privileged"], true);
    assert_eq!(c["command"], serde_json::json!(["khotfix"]));
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "run");
    assert_eq!(args[1], "recipes/ipvs-estimation-timer.toml");
    let at = |flag: &str| {
        args[args
            .iter()
            .position(|a| *a == flag)
            .unwrap_or_else(|| panic!("{flag} in {args:?}"))
            + 1]
    };
    assert_eq!(at("--job-index"), "$(JOB_COMPLETION_INDEX)");
    assert_eq!(at("--out"), "/shared/out");
    // The digest guard matches the plan khotfix computes for these inputs.
    let digest = at("--expect-plan");
    assert_eq!(digest.len(), 16);
    assert!(text.contains(&format!("plan {digest}")));
    // Cache and shared output volumes are mounted where the pod uses them.
    let mounts = c["volumeMounts"].as_array().unwrap();
    let mount = |name: &str| {
        mounts.iter().find(|m| m["name"] == name).unwrap()["mountPath"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(mount("cache"), "/var/cache/khotfix");
    assert_eq!(mount("shared"), "/shared");
    let env = c["env"].as_array().unwrap();
    assert!(env
        .iter()
        .any(|e| e["name"] == "KHOTFIX_CACHE_DIR" && e["value"] == "/var/cache/khotfix"));
    let vols = pod["volumes"].as_array().unwrap();
    assert!(vols.iter().any(
        |v| v["name"] == "cache" && v["persistentVolumeClaim"]["claimName"] == "khotfix-cache"
    ));
    // Every index is listed in the header with its job id, in plan order.
    for (i, j) in plan["jobs"].as_array().unwrap().iter().enumerate() {
        assert!(
            text.contains(&format!("#   index {i}: {}\n", j["id"].as_str().unwrap())),
            "{text}"
        );
    }

    assert_eq!(publish["kind"], "Job");
    assert_eq!(publish["spec"]["suspend"], true);
    let pc = &publish["spec"]["template"]["spec"]["containers"][0];
    let cmd = pc["command"].as_array().unwrap();
    assert_eq!(cmd[0], "/bin/sh");
    assert_eq!(cmd[1], "-c");
    let script = cmd[2].as_str().unwrap();
    assert!(
        script.contains("exec khotfix publish --repo /shared/repo \"$@\""),
        "{script}"
    );
    assert!(script.contains("/shared/out/verified/*/*.rpm"));
    assert!(text.contains(&format!(
        "kubectl -n kernel patch job/{}",
        publish["metadata"]["name"].as_str().unwrap()
    )));
}

#[test]
fn publish_script_passes_shellcheck_and_runs() {
    let script = khotfix::run::k8s::publish_script();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("publish.sh");
    std::fs::write(&p, format!("#!/bin/sh\n{script}")).unwrap();
    let o = Command::new("shellcheck")
        .arg(&p)
        .output()
        .expect("shellcheck (see .ci/packages.txt)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    // With nothing verified it refuses instead of publishing an empty set.
    let o = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no verified packages"));
}

#[test]
fn bad_k8s_options_are_refused_by_name() {
    for (k, v) in [
        ("KHOTFIX_K8S_PARALLELISM", "0"),
        ("KHOTFIX_K8S_NAME", "Bad_Name"),
        ("KHOTFIX_K8S_IMAGE", "a b"),
        ("KHOTFIX_K8S_WORKDIR", "rel"),
    ] {
        let o = khotfix(
            &[
                "plan",
                "--format",
                "k8s",
                "--kernels",
                "tests/data/kernels.txt",
                "recipes/ipvs-estimation-timer.toml",
            ],
            &[(k, v)],
        );
        assert_eq!(o.status.code(), Some(2), "{k}={v}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(k) && err.lines().count() == 1, "{err}");
        assert!(o.stdout.is_empty(), "nothing half-written on stdout");
    }
    // An empty plan has nothing to run.
    let plan = khotfix::plan::Plan::default();
    assert!(manifests(&plan, &K8sOptions::default()).is_err());
}

#[test]
fn yaml_writer_round_trips_hostile_strings() {
    let v = serde_json::json!({
        "plain": "x", "colon": "a: b", "hash": "# not a comment", "quote": "it's \"q\"",
        "newline": "l1\nl2", "dash": "- item", "empty": "", "star": "*anchor", "yes": "yes", "num": "012",
        "key with space": [1, true, null, {"nested": ["$(X)", {"deep": "v"}]}, [], {}],
        "unicode": "ü ✓",
    });
    let docs = parse_yaml(&to_yaml(&v).unwrap());
    assert_eq!(docs, vec![v]);
}

#[test]
fn github_actions_example_parses_and_wires_the_matrix() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/github-actions.yml"
    ))
    .unwrap();
    let wf = &parse_yaml(&text)[0];
    let jobs = &wf["jobs"];
    // plan → build (matrix from the plan's output) → publish.
    let plan_steps = jobs["plan"]["steps"].as_array().unwrap();
    assert!(plan_steps
        .iter()
        .any(|s| s["run"].as_str().is_some_and(
            |r| r.contains("khotfix plan --format github") && r.contains("$GITHUB_OUTPUT")
        )));
    assert_eq!(
        jobs["plan"]["outputs"]["matrix"],
        "${{ steps.plan.outputs.matrix }}"
    );
    assert_eq!(jobs["build"]["needs"], "plan");
    assert_eq!(
        jobs["build"]["strategy"]["matrix"],
        "${{ fromJSON(needs.plan.outputs.matrix) }}"
    );
    assert_eq!(jobs["build"]["strategy"]["fail-fast"], false);
    let build_steps = jobs["build"]["steps"].as_array().unwrap();
    let run_step = build_steps
        .iter()
        .find_map(|s| s["run"].as_str().filter(|r| r.contains("khotfix run")))
        .unwrap();
    assert!(
        run_step.contains("--job-index ${{ matrix.index }}"),
        "{run_step}"
    );
    assert!(run_step.contains("--report \"$GITHUB_STEP_SUMMARY\""));
    assert!(build_steps.iter().any(|s| s["uses"]
        .as_str()
        .is_some_and(|u| u.starts_with("actions/upload-artifact"))
        && s["with"]["path"] == "out/verified/"));
    assert_eq!(jobs["publish"]["needs"], "build");
    let pub_steps = jobs["publish"]["steps"].as_array().unwrap();
    assert!(pub_steps.iter().any(|s| s["uses"]
        .as_str()
        .is_some_and(|u| u.starts_with("actions/download-artifact"))
        && s["with"]["pattern"] == "hotfix-*"));
    assert!(pub_steps.iter().any(|s| s["run"]
        .as_str()
        .is_some_and(|r| r.contains("khotfix publish --repo"))));
    // Secrets go through env, never into a command line.
    for line in text.lines().filter(|l| l.contains("secrets.")) {
        assert!(
            line.trim_start().starts_with("KHOTFIX_") && line.contains(": ${{ secrets."),
            "secret outside env: {line}"
        );
    }
    // The matrix fields the workflow uses exist in `plan --format github`.
    let o = khotfix(
        &[
            "plan",
            "--format",
            "github",
            "--kernels",
            "tests/data/kernels.txt",
            "recipes/ipvs-estimation-timer.toml",
        ],
        &[],
    );
    let m: Value = serde_json::from_slice(&o.stdout).unwrap();
    let first = &m["include"][0];
    assert!(first["index"].is_u64() && first["job"].is_string(), "{m}");
}
