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
//! The pipeline's jobs run `apt-get update` and `.ci/install-deps
//! --packages-only` as the examples do: run as root (as CI does).
//! The tools are pinned and installed into .ci/tools by .ci/install-deps;
//! a missing tool fails the test. KHOTFIX_SKIP_CI_ENGINES=1 opts out (and
//! says "skipped").

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use support::bin::REPO;
use support::kernel::{debian_abi, debian_previous_abi};
use support::process::{output, text};

const K8S_VERSION: &str = "1.37.0";

/// Debian's current 6.1 ABI (what `linux-image-amd64` depends on) and the
/// newest older one whose headers the archive still has.
fn current_and_previous_abi() -> (String, String) {
    (debian_abi(), debian_previous_abi())
}

/// A pinned tool from .ci/tools (or PATH); `None` only under the opt-out.
fn tool(name: &str) -> Option<PathBuf> {
    let tools = PathBuf::from(REPO).join(".ci/tools");
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
    let mut c = support::bin::khotfix();
    c.args(args).current_dir(PathBuf::from(REPO));
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stdout_ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout)
}

/// check-jsonschema with a built-in schema; returns (passed, output).
fn check_jsonschema(bin: &Path, schema: &str, files: &[&Path]) -> (bool, String) {
    let o = output(
        Command::new(bin)
            .args(["--builtin-schema", schema])
            .args(files),
    );
    (o.status.success(), text(&o.stdout) + &text(&o.stderr))
}

fn kubernetes_validate(bin: &Path, file: &Path) -> (bool, String) {
    let o = output(
        Command::new(bin)
            .args(["--strict", "-k", K8S_VERSION])
            .arg(file),
    );
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
    let example = PathBuf::from(REPO).join("examples/github-actions.yml");
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

/// Issue 18 item 2: every job that runs khotfix runs in Debian 12 (its apt
/// is what the debian12 target discovers kernels with, and .ci/install-deps
/// installs Debian 12 packages), the build jobs where podman can run, and
/// the build guards its index with the plan digest the matrix carries.
#[test]
fn pipelines_run_their_jobs_in_debian12() {
    let gh = yaml_to_json(
        &std::fs::read_to_string(PathBuf::from(REPO).join("examples/github-actions.yml")).unwrap(),
    );
    for (name, job) in gh["jobs"].as_object().unwrap() {
        assert_eq!(
            job["container"]["image"], "rust:1-bookworm",
            "GitHub job {name}"
        );
        let setup: String = job["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["run"].as_str())
            .collect();
        assert!(
            setup.contains("apt-get update"),
            "GitHub job {name} refreshes apt"
        );
        assert!(
            !setup.contains("sudo"),
            "GitHub job {name} runs as the container's root"
        );
    }
    let build = &gh["jobs"]["build"];
    assert_eq!(build["container"]["options"], "--privileged");
    assert!(build["container"]["volumes"][0]
        .as_str()
        .is_some_and(|v| v.ends_with(":/var/lib/containers")));
    let steps = build["steps"].as_array().unwrap();
    let run_step = steps
        .iter()
        .find_map(|s| s["run"].as_str().filter(|r| r.contains("khotfix run")))
        .unwrap();
    assert!(
        run_step.contains("--expect-plan ${{ matrix.plan }}"),
        "{run_step}"
    );
    assert!(
        run_step.contains("--expect-job ${{ matrix.job }}"),
        "{run_step}"
    );

    for f in ["examples/gitlab-ci.yml", "examples/gitlab-ci-jobs.yml"] {
        let gl = yaml_to_json(&std::fs::read_to_string(PathBuf::from(REPO).join(f)).unwrap());
        assert_eq!(gl["default"]["image"], "rust:1-bookworm", "{f}");
    }
    let jobs = yaml_to_json(
        &std::fs::read_to_string(PathBuf::from(REPO).join("examples/gitlab-ci-jobs.yml")).unwrap(),
    );
    assert_eq!(jobs["build"]["extends"], ".khotfix-plan");
    let script = jobs["build"]["script"][0].as_str().unwrap();
    for guard in [
        "--job-index \"$KHOTFIX_JOB_INDEX\"",
        "--expect-plan \"$KHOTFIX_PLAN\"",
        "--expect-job \"$KHOTFIX_JOB\"",
    ] {
        assert!(script.contains(guard), "{guard} in {script}");
    }
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
    let parent = PathBuf::from(REPO).join("examples/gitlab-ci.yml");
    let jobs = PathBuf::from(REPO).join("examples/gitlab-ci-jobs.yml");
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
    let mut recipes: Vec<PathBuf> = std::fs::read_dir(PathBuf::from(REPO).join("recipes"))
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

// ---- gitlab-ci-local: the GitLab pipeline, run ------------------------------

/// The stand-in project the pipeline runs in: khotfix's pipeline files and
/// .ci/install-deps as they are in this repository, the public key halves,
/// and at the pipeline's default RECIPES path the debian12 kbuild target of
/// the ipvs-estimation-timer hotfix pinned to two kernels (the real recipe
/// builds only the newest), with its module source.
fn stand_in_project(dir: &Path, kernels: &[&str], keys: &Path) {
    for f in [
        "examples/gitlab-ci.yml",
        "examples/gitlab-ci-jobs.yml",
        ".ci/install-deps",
        ".ci/packages.txt",
        ".ci/env",
    ] {
        let to = dir.join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(PathBuf::from(REPO).join(f), &to).unwrap();
    }
    let src = PathBuf::from(REPO).join("patches/ipvs-estimation-timer/debian12");
    let to = dir.join("patches/ipvs-estimation-timer/debian12");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    for f in ["module-signing.crt.pem", "RPM-GPG-KEY-khotfix"] {
        std::fs::copy(keys.join(f), dir.join("keys").join(f)).unwrap();
    }
    write_recipe(dir, kernels);
    // gitlab-ci-local's stand-in for the project's CI/CD settings: a value
    // that is a file's path becomes a File variable, as GitLab's are.
    let vars = serde_json::json!({
        "KHOTFIX_MODULE_KEY": keys.join("module-signing.key.pem"),
        "KHOTFIX_RPM_KEY": keys.join("package-signing.secret.asc"),
    });
    std::fs::write(dir.join(".gitlab-ci-local-variables.yml"), vars.to_string()).unwrap();
    let git = |args: &[&str]| {
        let o = output(
            Command::new("git")
                .args([
                    "-c",
                    "user.name=khotfix test",
                    "-c",
                    "user.email=test@example.com",
                ])
                .args(args)
                .current_dir(dir),
        );
        assert!(o.status.success(), "git {args:?}: {}", text(&o.stderr));
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-qm", "stand-in project"]);
}

fn write_recipe(dir: &Path, kernels: &[&str]) {
    let recipe = format!(
        r#"# Stand-in for the CI engine test: the debian12 kbuild target, two kernels.
[hotfix]
id = 30001
name = "ipvs-estimation-timer"
summary = "Stop IPVS estimation_timer from walking all services in softirq"
description = "The debian12 kbuild livepatch of ipvs-estimation-timer, for the CI engine test."
version = "1.0"
backend = "kbuild"

[[target]]
name = "debian12"
distro = "debian12"
backend = "kbuild"
kernels = {}
module_source = "patches/ipvs-estimation-timer/debian12"
"#,
        serde_json::to_string(kernels).unwrap()
    );
    std::fs::create_dir_all(dir.join("recipes")).unwrap();
    std::fs::write(dir.join("recipes/ipvs-estimation-timer.toml"), recipe).unwrap();
}

/// gitlab-ci-local over examples/gitlab-ci.yml in `project` (all jobs, or
/// the named ones): shell executor for every job (the host is the Debian 12
/// the jobs' image stands for), each job in its own copy of the project
/// (--shell-isolation), artifacts only through GitLab's artifact passing,
/// one job at a time (two shared cores). `khotfix` on the jobs' PATH is the
/// binary under test.
fn gitlab_ci_local(gcl: &Path, project: &Path, home: &Path, jobs: &[&str]) -> String {
    let bin_dir = home.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let link = bin_dir.join("khotfix");
    if !link.exists() {
        std::os::unix::fs::symlink(support::bin::BIN, &link).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new(gcl);
    c.args([
        "--file",
        "examples/gitlab-ci.yml",
        "--force-shell-executor",
        "--shell-isolation",
        "--no-artifacts-to-source",
        "--concurrency",
        "1",
        "--no-color",
        "--home",
    ])
    .arg(home)
    .args(jobs)
    .current_dir(project)
    .env("PATH", path);
    // The container settings CI uses (.ci/env) unless already set.
    for (k, v) in [
        ("KHOTFIX_CONTAINER_ENGINE", "podman"),
        ("KHOTFIX_CONTAINER_ENGINE_OPTS", "--runtime runc"),
        (
            "KHOTFIX_CONTAINER_RUN_OPTS",
            "--ulimit nofile=1024:1024 --ulimit nproc=1024:1024",
        ),
        (
            "KHOTFIX_CONTAINER_BUILD_OPTS",
            "--ulimit nofile=1024:1024 --ulimit nproc=1024:1024",
        ),
    ] {
        if std::env::var_os(k).is_none() {
            c.env(k, v);
        }
    }
    let o = output(&mut c);
    let out = text(&o.stdout) + &text(&o.stderr);
    eprintln!("{out}");
    out
}

/// The PASS/FAIL summary lines of a gitlab-ci-local run: job name → passed.
/// (Its exit status does not reflect a failed child pipeline.)
fn outcomes(out: &str) -> std::collections::BTreeMap<String, bool> {
    let mut m = std::collections::BTreeMap::new();
    for l in out.lines() {
        let l = l.trim();
        let (passed, rest) = if let Some(r) = l.strip_prefix("PASS ") {
            (true, r)
        } else if let Some(r) = l.strip_prefix("FAIL ") {
            (false, r)
        } else {
            continue;
        };
        let name = rest.trim();
        let name = name.strip_prefix("[build] -> ").unwrap_or(name).trim();
        m.insert(name.to_string(), passed);
    }
    m
}

fn rpm_name(p: &Path) -> String {
    let o = output(Command::new("rpm").args(["-qp", "--qf", "%{NAME}"]).arg(p));
    assert!(
        o.status.success(),
        "rpm -qp {}: {}",
        p.display(),
        text(&o.stderr)
    );
    text(&o.stdout)
}

fn files_under(dir: &Path, ext: &str) -> Vec<PathBuf> {
    walkdir(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect()
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walkdir(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn gitlab_ci_local_runs_the_pipeline_and_the_digest_guard_refuses_a_changed_plan() {
    let Some(gcl) = tool("gitlab-ci-local") else {
        return;
    };
    let (current, previous) = current_and_previous_abi();
    let work = tempfile::tempdir().unwrap();
    let keys = work.path().join("secret-keys");
    stdout_ok(&khotfix(&["keys", "generate", keys.to_str().unwrap()], &[]));
    let project = work.path().join("project");
    let home = work.path().join("gcl-home");
    stand_in_project(&project, &[&previous, &current], &keys);

    let out = gitlab_ci_local(&gcl, &project, &home, &[]);
    let state = project.join(".gitlab-ci-local");
    // The plan job's artifact is the child pipeline: the matrix and the include.
    let child = std::fs::read_to_string(state.join("artifacts/plan/khotfix-pipeline.yml"))
        .expect("the plan job's artifact");
    let child_doc = yaml_to_json(&child);
    assert_eq!(
        child_doc["include"][0]["local"],
        "examples/gitlab-ci-jobs.yml"
    );
    let digest = child_doc[".khotfix-plan"]["variables"]["KHOTFIX_PLAN"]
        .as_str()
        .unwrap()
        .to_string();
    let ids: Vec<String> = [&previous, &current]
        .iter()
        .map(|k| format!("30001-debian12-{k}"))
        .collect();

    let got = outcomes(&out);
    let build_job = |i: usize| format!("build: [{},{i}]", ids[i]);
    for name in [
        "plan".to_string(),
        build_job(0),
        build_job(1),
        "publish".to_string(),
    ] {
        assert_eq!(
            got.get(&name),
            Some(&true),
            "job {name:?} did not pass: {got:?}\n{out}"
        );
    }
    // Each matrix job built its own kernel, and only that one.
    for (i, id) in ids.iter().enumerate() {
        let arts: Vec<PathBuf> = std::fs::read_dir(state.join("artifacts"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy().into_owned();
                n.starts_with("build") && n.ends_with(&format!("A{i}XQ"))
            })
            .collect();
        assert_eq!(arts.len(), 1, "artifacts of build job {i}: {arts:?}");
        let verified = arts[0].join("out/verified");
        let dirs: Vec<String> = std::fs::read_dir(&verified)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            dirs,
            std::slice::from_ref(id),
            "build job {i} verified {dirs:?}"
        );
        let rpms = files_under(&verified, "rpm");
        assert_eq!(rpms.len(), 1, "{rpms:?}");
        let kernel = id.strip_prefix("30001-debian12-").unwrap();
        let version = kernel.strip_suffix("-amd64").unwrap();
        assert_eq!(rpm_name(&rpms[0]), format!("kernel-hotfix-30001-{version}"));
        let report = std::fs::read_to_string(arts[0].join("out/report.md")).unwrap();
        assert!(report.contains(id) && report.contains(&digest), "{report}");
    }
    // The publish job's repository holds both and verifies.
    let repo = state.join("artifacts/publish/repo");
    let mut names: Vec<String> = files_under(&repo, "rpm")
        .iter()
        .map(|p| rpm_name(p))
        .collect();
    names.sort();
    let mut want: Vec<String> = [&previous, &current]
        .iter()
        .map(|k| format!("kernel-hotfix-30001-{}", k.strip_suffix("-amd64").unwrap()))
        .collect();
    want.sort();
    assert_eq!(names, want);
    let v = khotfix(&["repo", "verify", repo.to_str().unwrap()], &[]);
    assert!(
        v.status.success(),
        "repo verify: {}{}",
        text(&v.stdout),
        text(&v.stderr)
    );

    // A kernel appears after the plan job handed out the matrix: the
    // trigger job runs the old child pipeline over the changed recipe, and
    // every build job refuses before doing any work; publish has nothing.
    let older = format!(
        "6.1.0-{}-amd64",
        previous
            .strip_prefix("6.1.0-")
            .and_then(|r| r.strip_suffix("-amd64"))
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap()
            - 1
    );
    write_recipe(&project, &[&older, &previous, &current]);
    let out = gitlab_ci_local(&gcl, &project, &home, &["build"]);
    let got = outcomes(&out);
    for i in 0..2 {
        assert_eq!(got.get(&build_job(i)), Some(&false), "{got:?}\n{out}");
    }
    // gitlab-ci-local does not start a `when: always` job whose needs
    // failed (GitLab would, and it would find no verified packages).
    assert_ne!(got.get("publish"), Some(&true), "{got:?}\n{out}");
    for id in &ids {
        let refusal = format!("build: [{id},");
        assert!(
            out.lines().any(|l| l.contains(&refusal)
                && l.contains("the plan changed since it was handed out")
                && l.contains(&format!("expected {digest}"))),
            "{id} did not refuse: {out}"
        );
    }
    // Bad input (exit 2), not a failed build (exit 1).
    assert!(out.matches("FAIL 2").count() >= 2, "{out}");
}
