//! `khotfix plan` on the two seed recipes against tests/data/kernels.txt,
//! through the real binary: exactly the expected jobs, in every format.

mod support;

use support::bin::khotfix;

use std::collections::BTreeSet;
use std::process::{Command, Output};

const RECIPES: [&str; 2] = [
    "recipes/bpf-lru-leak-22519882.toml",
    "recipes/ipvs-estimation-timer.toml",
];

fn plan(extra: &[&str]) -> Output {
    khotfix()
        .arg("plan")
        .args(RECIPES)
        .args(extra)
        .output()
        .expect("run khotfix plan")
}

fn stdout_ok(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

/// (target, kernel) of every job the list must produce, and nothing else.
fn expected() -> BTreeSet<(String, String)> {
    let mut want = BTreeSet::new();
    for k in ["", ".1.1", ".1.2", ".4.1", ".9.1", ".18.1"] {
        want.insert(("centos7".to_string(), format!("3.10.0-1062{k}.el7.x86_64")));
    }
    for r in ["15", "15.1", "16", "16.1", "17", "18", "19", "19.1"] {
        want.insert(("alinux3".to_string(), format!("5.10.134-{r}.al8.x86_64")));
    }
    // select = "newest": 6.1.0-56 only, not 6.1.0-25.
    want.insert(("debian12".to_string(), "6.1.0-56-amd64".to_string()));
    // The same kernel for the kpatch-built target (it ships; debian12 is
    // its verify-only cross-check).
    want.insert(("debian12-kpatch".to_string(), "6.1.0-56-amd64".to_string()));
    want
}

fn json_jobs(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v["jobs"].as_array().expect("jobs array").clone()
}

#[test]
fn json_lists_exactly_the_expected_jobs() {
    let text = stdout_ok(&plan(&["--kernels", "tests/data/kernels.txt", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&text).expect("plan --json is JSON");
    let jobs = json_jobs(&v);
    let got: BTreeSet<(String, String)> = jobs
        .iter()
        .map(|j| {
            (
                j["target"].as_str().expect("target").to_string(),
                j["kernel"].as_str().expect("kernel").to_string(),
            )
        })
        .collect();
    assert_eq!(got, expected());
    assert_eq!(jobs.len(), expected().len(), "duplicate jobs");
    for j in &jobs {
        let (id, kernel) = (
            j["id"].as_str().expect("id"),
            j["kernel"].as_str().expect("kernel"),
        );
        let hotfix = j["hotfix_id"].as_u64().expect("hotfix_id");
        assert_eq!(
            id,
            format!(
                "{hotfix}-{}-{kernel}",
                j["target"].as_str().unwrap_or_default()
            )
        );
        let vr = kernel
            .trim_end_matches(".x86_64")
            .trim_end_matches(".el7")
            .trim_end_matches(".al8");
        let vr = vr.trim_end_matches("-amd64");
        assert_eq!(
            j["package"].as_str(),
            Some(format!("kernel-hotfix-{hotfix}-{vr}").as_str()),
            "{id}"
        );
        let backend = j["backend"].as_str().expect("backend");
        assert_eq!(
            backend,
            if j["target"] == "debian12" {
                "kbuild"
            } else {
                "kpatch"
            },
            "{id}"
        );
    }
    // Neither ContainerOS, el8, 14, 19.2 nor 20 are built.
    for k in [
        "lifsea8",
        "el8",
        "-14.al8",
        "-19.2.al8",
        "-20.al8",
        "1127",
        "957",
        "6.1.0-25",
    ] {
        assert!(!text.contains(k), "plan should not mention {k}");
    }
}

#[test]
fn output_is_stable_whatever_the_kernel_list_order() {
    let list = std::fs::read_to_string("tests/data/kernels.txt").expect("kernel list");
    let mut lines: Vec<&str> = list.lines().collect();
    lines.reverse();
    let mut f = tempfile::NamedTempFile::new().expect("temp");
    std::io::Write::write_all(&mut f, lines.join("\n").as_bytes()).expect("write");
    let a = stdout_ok(&plan(&["--kernels", "tests/data/kernels.txt", "--json"]));
    let path = f.path().to_str().expect("path");
    let b = stdout_ok(&plan(&["--kernels", path, "--json"]));
    assert_eq!(a, b);
    // rpm order inside a target: 15 before 15.1 before 16.
    let v: serde_json::Value = serde_json::from_str(&a).expect("json");
    let al8: Vec<String> = json_jobs(&v)
        .iter()
        .filter(|j| j["target"] == "alinux3")
        .map(|j| j["kernel"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        al8.first().map(String::as_str),
        Some("5.10.134-15.al8.x86_64")
    );
    assert_eq!(
        al8.get(1).map(String::as_str),
        Some("5.10.134-15.1.al8.x86_64")
    );
    assert_eq!(
        al8.last().map(String::as_str),
        Some("5.10.134-19.1.al8.x86_64")
    );
}

#[test]
fn github_matrix_include_holds_every_job() {
    let text = stdout_ok(&plan(&[
        "--kernels",
        "tests/data/kernels.txt",
        "--format",
        "github",
    ]));
    assert_eq!(
        text.trim().lines().count(),
        1,
        "GitHub wants the matrix on one line for $GITHUB_OUTPUT"
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("github matrix is JSON");
    let include = v["include"].as_array().expect("include array");
    let got: BTreeSet<(String, String)> = include
        .iter()
        .map(|j| {
            (
                j["target"].as_str().expect("target").to_string(),
                j["kernel"].as_str().expect("kernel").to_string(),
            )
        })
        .collect();
    assert_eq!(got, expected());
    for j in include {
        assert!(
            j["job"].is_string() && j["recipe"].is_string() && j["distro"].is_string(),
            "{j}"
        );
    }
}

#[test]
fn gitlab_child_pipeline_matrix_holds_every_job() {
    let text = stdout_ok(&plan(&[
        "--kernels",
        "tests/data/kernels.txt",
        "--format",
        "gitlab",
    ]));
    // Read with a real YAML parser (python3-yaml), as GitLab would.
    let o = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .expect("python3 with python3-yaml");
    assert!(o.status.success(), "{text}");
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let hidden = &doc[".khotfix-plan"];
    let digest = hidden["variables"]["KHOTFIX_PLAN"].as_str().unwrap();
    assert_eq!(digest.len(), 16, "{text}");
    assert!(text.starts_with(&format!(
        "# khotfix plan: {} job(s), plan {digest}\n",
        expected().len()
    )));
    assert!(
        doc.get("include").is_none(),
        "no include unless asked: {text}"
    );
    let matrix = hidden["parallel"]["matrix"].as_array().unwrap();
    assert_eq!(matrix.len(), expected().len());
    let jobs = json_jobs(
        &serde_json::from_str(&stdout_ok(&plan(&[
            "--kernels",
            "tests/data/kernels.txt",
            "--json",
        ])))
        .unwrap(),
    );
    // Entry i is plan job i: `--job-index $KHOTFIX_JOB_INDEX --expect-job $KHOTFIX_JOB`.
    for (i, (m, j)) in matrix.iter().zip(&jobs).enumerate() {
        assert_eq!(m["KHOTFIX_JOB_INDEX"], i.to_string());
        assert_eq!(m["KHOTFIX_JOB"], j["id"]);
        assert_eq!(m.as_object().unwrap().len(), 2, "{m}");
    }
}

#[test]
fn gitlab_include_is_a_plain_project_path() {
    let run = |include: &str| {
        khotfix()
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "plan",
                "--kernels",
                "tests/data/kernels.txt",
                "--format",
                "gitlab",
            ])
            .args(RECIPES)
            .env("KHOTFIX_GITLAB_INCLUDE", include)
            .output()
            .unwrap()
    };
    let text = stdout_ok(&run("ci/khotfix-jobs.yml"));
    assert!(
        text.contains("include:\n  - local: \"ci/khotfix-jobs.yml\"\n"),
        "{text}"
    );
    for bad in [
        "../x.yml",
        "$CI_PROJECT_DIR/x.yml",
        "a b.yml",
        "x.yml\nstages: []",
    ] {
        let o = run(bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("KHOTFIX_GITLAB_INCLUDE") && err.lines().count() == 1,
            "{err}"
        );
        assert!(o.stdout.is_empty(), "nothing half-written for {bad:?}");
    }
}

#[test]
fn table_has_a_header_and_one_row_per_job() {
    let text = stdout_ok(&plan(&["--kernels", "tests/data/kernels.txt"]));
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    assert!(
        header.starts_with("JOB") && header.contains("KERNEL") && header.contains("PACKAGE"),
        "{header}"
    );
    assert_eq!(lines.count(), expected().len());
}

#[test]
fn bad_kernel_list_names_file_and_line() {
    let mut f = tempfile::NamedTempFile::new().expect("temp");
    std::io::Write::write_all(
        &mut f,
        b"5.10.134-18.al8.x86_64\n5.10.134-18.al8.$(reboot)\n",
    )
    .expect("write");
    let path = f.path().to_str().expect("path").to_string();
    let out = plan(&["--kernels", &path, "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("{path}:2:")), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout when the input is bad"
    );
}

/// Run `khotfix plan ARGS` in `dir` under `/usr/bin/time -f %M` (max RSS,
/// KiB, printed last on stderr); kill it after a generous guard.
fn plan_measured(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String, u64) {
    use std::time::{Duration, Instant};
    // Output goes to files: a pipe nobody reads until exit would block a big plan.
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let err_file = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(support::bin::BIN)
        .arg("plan")
        .args(args)
        .current_dir(dir)
        .stdout(out_file.reopen().unwrap())
        .stderr(err_file.reopen().unwrap())
        .spawn()
        .expect("run khotfix plan under /usr/bin/time");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(600) {
            child.kill().unwrap();
            panic!("plan still running after 600 s: hung or quadratic");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(err_file.path()).unwrap();
    let rss = stderr
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("max RSS from /usr/bin/time");
    // Drop /usr/bin/time's own lines (the RSS, "Command exited with ...").
    let stderr: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("Command exited with") && l.trim().parse::<u64>().is_err())
        .collect();
    (
        status.code(),
        std::fs::read_to_string(out_file.path()).unwrap(),
        stderr.join("\n"),
        rss,
    )
}

/// A recipe with `n` kpatch targets on centos7, each one listed kernel.
fn many_targets(dir: &std::path::Path, n: usize) {
    std::fs::create_dir_all(dir.join("r")).unwrap();
    std::fs::write(
        dir.join("r/fix.patch"),
        "--- a/k.c\n+++ b/k.c\n@@ -1 +1 @@\n-a\n+b\n",
    )
    .unwrap();
    let mut s = String::from(
        "[hotfix]\nid = 7\nname = \"many\"\nsummary = \"s\"\ndescription = \"d\"\nversion = \"1.0\"\n",
    );
    for i in 0..n {
        s.push_str(&format!(
            "\n[[target]]\nname = \"t{i}\"\ndistro = \"centos7\"\nkernels = [\"3.10.0-{i}.el7.x86_64\"]\npatches = [\"fix.patch\"]\n"
        ));
    }
    // The last target matches nothing: one warning. (Its range lies above
    // every listed kernel: two published targets that can match the same
    // kernel are a lint error.)
    s.push_str("\n[[target]]\nname = \"none\"\ndistro = \"centos7\"\nranges = [{ from = \"3.10.0-100000\", to = \"3.10.0-100001\" }]\npatches = [\"fix.patch\"]\n");
    std::fs::write(dir.join("r/many.toml"), s).unwrap();
}

#[test]
fn twenty_thousand_targets_plan_completes() {
    // Was 43 s: the "matched no kernel" warning compared every target with every job.
    let d = tempfile::tempdir().unwrap();
    many_targets(d.path(), 20_000);
    let (code, out, err, _) = plan_measured(d.path(), &["r/many.toml", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json_jobs(&v).len(), 20_000);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("target \"none\" matched no kernel"), "{err}");
}

#[test]
fn million_line_kernel_list_is_streamed_in_bounded_memory() {
    // Was 774 MB RSS: the whole list was read and parsed into memory.
    let d = tempfile::tempdir().unwrap();
    let mut list = String::with_capacity(30 << 20);
    for i in 0..1_000_000 {
        list.push_str(&format!("5.10.134-{i}.al8.x86_64\n"));
    }
    std::fs::write(d.path().join("kernels.txt"), list).unwrap();
    let recipe = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(RECIPES[0]);
    let (code, out, err, rss_kib) = plan_measured(
        d.path(),
        &[
            recipe.to_str().unwrap(),
            "--kernels",
            "kernels.txt",
            "--json",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // The seed recipe's range is 5.10.134-15 ..= 5.10.134-19.1: 15..=19.
    assert_eq!(json_jobs(&v).len(), 5, "{out}");
    eprintln!("plan over a 1,000,000-line kernel list: max RSS {rss_kib} KiB");
    assert!(
        rss_kib < 100 * 1024,
        "max RSS {rss_kib} KiB: the list was not streamed"
    );
}

#[test]
fn overlong_kernel_list_line_is_one_located_error() {
    let d = tempfile::tempdir().unwrap();
    let text = format!("5.10.134-18.al8.x86_64\n{}\n", "x".repeat(1 << 20));
    std::fs::write(d.path().join("k.txt"), text).unwrap();
    let recipe = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(RECIPES[0]);
    let (code, out, err, _) =
        plan_measured(d.path(), &[recipe.to_str().unwrap(), "--kernels", "k.txt"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("k.txt:2: line longer than 4096 bytes"),
        "{err}"
    );
}
