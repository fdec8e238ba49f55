//! The `khotfix` binary: `kernels`, `fetch`, `plan --from-repos`, and kill -9
//! in the middle of a download.

mod support;

use khotfix::fetch::Cache;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::bin::khotfix_fetch;
use support::http::{Fault, Server};
use support::kernel_rpms as rpms;
use support::kernel_rpms::mirrors;

const DEVEL: &str = "kernel-devel-5.10.134-18.al8.x86_64.rpm";

fn recipe(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("mod")).unwrap();
    // A minimal kbuild module source: recipe validation wants Kbuild and a .c file.
    std::fs::write(dir.join("mod/Kbuild"), "obj-m := livepatch.o\n").unwrap();
    std::fs::write(
        dir.join("mod/livepatch.c"),
        "/* not compiled by the fetch tests */\n",
    )
    .unwrap();
    let p = dir.join("r.toml");
    std::fs::write(
        &p,
        r#"[hotfix]
id = 42
name = "test-fix"
summary = "test"
description = "test hotfix"
version = "1"
backend = "kbuild"

[[target]]
name = "al"
distro = "alinux3"
module_source = "mod"
ranges = [{ from = "5.10.134-18", to = "5.10.134-19.1" }]
"#,
    )
    .unwrap();
    p
}

fn setup() -> (tempfile::TempDir, Server) {
    let tmp = tempfile::tempdir().unwrap();
    rpms::make_repos(&tmp.path().join("www"), "gz");
    let srv = Server::start(&tmp.path().join("www"));
    (tmp, srv)
}

#[test]
fn kernels_lists_what_the_repositories_publish() {
    let (tmp, srv) = setup();
    let mut c = khotfix_fetch();
    c.args(["kernels", "--distro", "alinux3", "--json", "--cache-dir"])
        .arg(tmp.path().join("c"));
    for m in mirrors(&srv) {
        c.args(["--mirror", &m]);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["kernels"],
        serde_json::json!(["5.10.134-18.al8.x86_64", "5.10.134-19.1.al8.x86_64"])
    );

    // Mirrors from the environment; plain output.
    let out = khotfix_fetch()
        .args(["kernels", "--distro", "alinux3"])
        .env("KHOTFIX_CACHE_DIR", tmp.path().join("c"))
        .env("KHOTFIX_MIRRORS", mirrors(&srv).join(" "))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "5.10.134-18.al8.x86_64\n5.10.134-19.1.al8.x86_64\n"
    );

    // A mirror override naming no repository: one line, exit 2.
    let out = khotfix_fetch()
        .args([
            "kernels",
            "--distro",
            "alinux3",
            "--mirror",
            "nope=http://127.0.0.1:1/",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no repository \"nope\"") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn plan_from_repos_expands_ranges_to_published_kernels() {
    let (tmp, srv) = setup();
    let r = recipe(tmp.path());
    let out = khotfix_fetch()
        .args(["plan", "--from-repos", "--json"])
        .arg(&r)
        .env("KHOTFIX_CACHE_DIR", tmp.path().join("c"))
        .env("KHOTFIX_MIRRORS", mirrors(&srv).join(";"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kernels: Vec<&str> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["kernel"].as_str().unwrap())
        .collect();
    assert_eq!(
        kernels,
        ["5.10.134-18.al8.x86_64", "5.10.134-19.1.al8.x86_64"]
    );
}

#[test]
fn kill_9_mid_download_leaves_only_verified_files_and_the_next_run_completes() {
    let (tmp, srv) = setup();
    let r = recipe(tmp.path());
    let cache_dir = tmp.path().join("cache");
    // About 4 s for the 3 MiB kernel-devel.
    srv.fault(
        DEVEL,
        Fault::Slow {
            chunk: 32 << 10,
            delay_ms: 40,
        },
        None,
    );
    let run = || {
        let mut c = khotfix_fetch();
        c.arg("fetch")
            .arg(&r)
            .args([
                "--kernel",
                rpms::BIG_KERNEL,
                "--json",
                "--quiet",
                "--cache-dir",
            ])
            .arg(&cache_dir);
        for m in mirrors(&srv) {
            c.args(["--mirror", &m]);
        }
        c
    };
    let mut child = run()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sum = rpms::sha256_of(&rpms::rpm_path(DEVEL));
    let part = cache_dir.join("partial").join(format!("sha256-{sum}.part"));
    let t = Instant::now();
    while std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) < 512 << 10 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "download never started"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "fetch ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed_at = std::fs::metadata(&part).unwrap().len();
    assert!(killed_at < rpms::BIG_BLOB as u64);

    let cache = Cache::open(&cache_dir).unwrap();
    assert!(
        cache.verify_all().unwrap().is_empty(),
        "a file in the cache does not match its digest"
    );
    assert!(
        !cache.objects().unwrap().iter().any(|p| p.ends_with(DEVEL)),
        "a partial download is visible in the cache"
    );

    srv.clear_faults();
    srv.clear_log();
    let out = run().output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["ok"], true);
    let devel = PathBuf::from(v[0]["fetched"]["devel_rpm"].as_str().unwrap());
    assert_eq!(
        std::fs::read(&devel).unwrap(),
        std::fs::read(rpms::rpm_path(DEVEL)).unwrap()
    );
    // It resumed where the killed run stopped.
    let reqs = srv.requests_for(DEVEL);
    assert_eq!(reqs.len(), 1);
    let from: u64 = reqs[0]
        .range
        .as_deref()
        .unwrap()
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(
        from >= killed_at,
        "resumed at {from}, the part held {killed_at}"
    );
    assert!(cache.verify_all().unwrap().is_empty());
    assert_eq!(
        cache.objects().unwrap().len(),
        4 + 2,
        "4 packages + 2 primary files (the source repo is direct)"
    );
    assert!(!part.exists());
}

#[test]
fn fetch_failure_exits_1_with_one_line_per_job() {
    let (tmp, srv) = setup();
    let r = recipe(tmp.path());
    srv.fault(DEVEL, Fault::Corrupt, None);
    let mut c = khotfix_fetch();
    c.arg("fetch")
        .arg(&r)
        .args(["--kernel", rpms::BIG_KERNEL, "--cache-dir"])
        .arg(tmp.path().join("c"));
    for m in mirrors(&srv) {
        c.args(["--mirror", &m]);
    }
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("khotfix: error:"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("checksum mismatch for") && line.contains(DEVEL),
        "{line}"
    );
    // stderr is not a TTY: plain progress lines, no bar escapes.
    assert!(err.contains("fetch: ") && !err.contains('\u{1b}'), "{err}");
}
