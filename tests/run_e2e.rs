//! End-to-end `khotfix run` through the real binary (issue 8's tests):
//!
//! * the full Debian 12 run of both targets (Debian's source, headers, image
//!   and -dbg vmlinux via apt; the real kpatch-build turning the 6.1 diff into
//!   the livepatch, and the hand-written kbuild module as a cross-check, both
//!   in the podman builder; signed, packaged, boot-verified under qemu; the
//!   kpatch build published) and a dnf install from the published repository
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

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::bin::{khotfix, REPO};
use support::container::ci_container_env;
use support::dnf::{dnf_no_repos, key_url, signed_repo};
use support::gpg::rpmsign_with;
use support::http::Http;
use support::kernel::debian_previous_abi;
use support::process::{ok, output, text};
use support::rpm::{rpmbuild, BUSYBOX_SH_SPEC};

/// `khotfix run` with the container settings CI uses (`.ci/env`'s values
/// unless the environment already sets them) and the default cache.
fn khotfix_run(args: &[&str], out: &Path, extra_env: &[(&str, String)]) -> Output {
    let mut c = khotfix();
    c.arg("run").args(args).arg("--out").arg(out).arg("--json");
    ci_container_env(&mut c);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.current_dir(REPO);
    output(&mut c)
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

/// dnf with only the published repository's parts (`""` the top level,
/// `"deb12"` that dist's part), gpgcheck and repo_gpgcheck on, a private
/// cache, the key imported from the repository (-y).
fn dnf(url: &str, parts: &[&str], cache: &Path, args: &[&str]) -> Output {
    let mut c = dnf_no_repos(cache);
    for (i, part) in parts.iter().enumerate() {
        let part_url = if part.is_empty() {
            url.to_string()
        } else {
            format!("{url}{part}/")
        };
        signed_repo(&mut c, &format!("khf{i}"), &part_url, &key_url(url));
    }
    output(c.args(args))
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

/// The job's verify report (from disk, equal to the run report's), after
/// checking that every check passed, including the qemu boot of Debian's
/// kernel with the module loaded, enabled and `ip_vs` patched.
fn boot_verified(out: &Path, j: &serde_json::Value) -> serde_json::Value {
    assert_eq!(j["status"], "passed", "{j:#}");
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
        assert_eq!(outcome, "pass", "{job_id}: {name}: {msg}");
        assert!(
            msg.contains(want),
            "{job_id}: {name}: {msg:?} lacks {want:?}"
        );
    }
    assert!(
        verify["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["outcome"] == "pass"),
        "{job_id}: a verify check did not pass: {verify:#}"
    );
    verify
}

/// The recipe's two Debian 12 targets for the ABI Debian ships today: the
/// real kpatch-build (v0.9.11 from the vendored release, in the debian12
/// builder) turning the 6.1 source diff into the livepatch, and the
/// hand-written kbuild module as a verify-only cross-check. Both boot
/// Debian's own kernel under qemu with the patch enabled; only the kpatch
/// build is published, and dnf installs exactly those bytes.
#[test]
fn debian12_run_boot_verifies_and_installs_with_dnf() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let o = khotfix_run(
        &[
            "recipes/ipvs-estimation-timer.toml",
            "--target",
            "debian12-kpatch",
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
        (Some(2), Some(0))
    );
    let j = job(&r, "30001-debian12-kpatch-");
    let kver = j["kernel"].as_str().unwrap().to_string();
    let package = j["package"].as_str().unwrap().to_string();
    let verify = boot_verified(&out, j);
    let cross_check = job(&r, "30001-debian12-6.");
    boot_verified(&out, cross_check);
    assert_eq!(cross_check["kernel"], j["kernel"]);

    // kpatch-build built ip_vs.ko alone and found the changed function.
    let prep = stage(j, "prepare").unwrap();
    assert_eq!(
        prep["detail"]["targets"],
        serde_json::json!({"kind": "modules", "modules": ["net/netfilter/ipvs/ip_vs.ko"]}),
        "{prep:#}"
    );
    let build_log = std::fs::read_to_string(
        stage(j, "build").unwrap()["detail"]["log"]
            .as_str()
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                out.join("jobs")
                    .join(j["id"].as_str().unwrap())
                    .join("build/logs")
                    .join(format!("{}.log", j["id"].as_str().unwrap()))
            }),
    )
    .unwrap_or_default();
    if !build_log.is_empty() {
        assert!(
            build_log.contains("changed function: estimation_timer"),
            "kpatch-build log: {build_log}"
        );
    }
    let modinfo = ok(Command::new("modinfo")
        .args(["-F", "vermagic"])
        .arg(verify["module"].as_str().unwrap()));
    assert!(
        text(&modinfo.stdout).starts_with(&format!("{kver} SMP preempt mod_unload modversions")),
        "vermagic {:?} is not Debian's {kver}",
        text(&modinfo.stdout)
    );
    // Only the shipping target's package is in the repository (its deb12 part).
    let published: Vec<String> = std::fs::read_dir(out.join("repo/deb12/Packages"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let shipped = PathBuf::from(j["rpm"].as_str().unwrap());
    assert_eq!(
        published,
        vec![shipped.file_name().unwrap().to_string_lossy().into_owned()],
        "the repository must hold the kpatch build only"
    );
    let verified_ko = PathBuf::from(verify["module"].as_str().unwrap());
    let verified_bytes = std::fs::read(&verified_ko).unwrap();

    // Publish the kpatch runtime stand-in into the same repository, signed
    // by the same package key (rpmsign) and the repodata re-signed by
    // `khotfix publish`. The hotfix (release `….deb12`) is in the deb12
    // part; the stand-ins carry no dist tag and land at the top level.
    let repo = out.join("repo");
    let secret = out.join("keys").join(khotfix::keys::PGP_SECRET_FILE);
    let kpatch = rpmbuild(KPATCH_SPEC, work.path(), "kpatch");
    let sh = rpmbuild(BUSYBOX_SH_SPEC, work.path(), "busybox-sh");
    rpmsign_with(&secret, &kpatch, work.path());
    rpmsign_with(&secret, &sh, work.path());
    ok(khotfix()
        .args(["publish", "--repo"])
        .arg(&repo)
        .arg("--gpg-key")
        .arg(&secret)
        .arg(&kpatch)
        .arg(&sh));
    assert_eq!(repo_packages(&repo.join("deb12")), vec![package.clone()]);
    let mut listed = repo_packages(&repo);
    listed.sort();
    assert_eq!(
        listed,
        vec!["busybox-sh".to_string(), "kpatch".to_string()],
        "repodata"
    );
    let v = output(khotfix().args(["repo", "verify"]).arg(&repo));
    assert!(v.status.success(), "repo verify: {}", text(&v.stdout));

    // dnf into an empty installroot over HTTP: it pulls in kpatch and
    // /bin/sh, and the scriptlets run chrooted there (another root: %post
    // installs the module for the target kernel and loads nothing; a
    // Debian hotfix has no kernel-uname-r requirement).
    let http = Http::serve(&repo);
    let inst_root = work.path().join("root");
    let cache = work.path().join("dnf-cache");
    let inst = dnf(
        &http.url(),
        &["", "deb12"],
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

// ---- 2. a patch that does not apply fails its job alone --------------------

/// Kernel release of the stand-in CentOS 7 mirror.
const EL7_VERSION: &str = "3.10.0";
const EL7_RELEASE: &str = "1062.el7";

/// The stand-in vendor mirror's packages: a source RPM shaped like RHEL's
/// (kernel.spec plus a `linux-<ver>-<rel>.tar.xz` with the files the test
/// needs) and kernel, kernel-devel, kernel-debuginfo and
/// kernel-debuginfo-common-x86_64 with placeholder contents. No RPM here is a
/// kernel; the test only needs fetch to find and verify them and prepare to
/// read the tree.
const EL7_SPEC: &str = r#"%global debug_package %{nil}
%global __os_install_post %{nil}
%define _build_id_links none
Name: kernel
Version: %{kver}
Release: %{krel}
Summary: khotfix end-to-end test stand-in for a CentOS 7 kernel package set
License: GPLv2
Source0: linux-%{kver}-%{krel}.tar.xz

%description
Not a kernel: a stand-in vendor mirror's package set shaped like one.

%package devel
Summary: stand-in kernel-devel
%description devel
stand-in

%package debuginfo
Summary: stand-in kernel-debuginfo
%description debuginfo
stand-in

%package -n kernel-debuginfo-common-x86_64
Summary: stand-in kernel-debuginfo-common
%description -n kernel-debuginfo-common-x86_64
stand-in

%prep
%build
%install
K=%{version}-%{release}.x86_64
mkdir -p %{buildroot}/boot %{buildroot}/usr/src/kernels/$K %{buildroot}/usr/lib/debug/lib/modules/$K %{buildroot}/usr/src/debug/kernel-$K
echo "vmlinuz $K" > %{buildroot}/boot/vmlinuz-$K
echo "Makefile $K" > %{buildroot}/usr/src/kernels/$K/Makefile
echo "vmlinux $K" > %{buildroot}/usr/lib/debug/lib/modules/$K/vmlinux
echo "stand-in debug sources" > %{buildroot}/usr/src/debug/kernel-$K/README

%files
/boot/vmlinuz-%{version}-%{release}.x86_64

%files devel
/usr/src/kernels/%{version}-%{release}.x86_64

%files debuginfo
/usr/lib/debug/lib/modules/%{version}-%{release}.x86_64

%files -n kernel-debuginfo-common-x86_64
/usr/src/debug/kernel-%{version}-%{release}.x86_64
"#;

/// The stand-in tree's net/netfilter/ipvs/ip_vs_est.c: the first hunk of
/// the recipe's patch finds its context at line 55, but estimation_timer
/// has the newer timer API (as in a tree the patch was not written for), so
/// hunk #2 cannot apply.
fn stand_in_ip_vs_est_c() -> String {
    let mut s = String::new();
    for i in 1..55 {
        s.push_str(&format!("/* stand-in ip_vs_est.c line {i} */\n"));
    }
    s.push_str(
        "/*\n * Make a summary from each cpu\n */\n\
         static void ip_vs_read_cpu_stats(struct ip_vs_stats_user *sum,\n\
         \t\t\t\t struct ip_vs_cpu_stats __percpu *stats)\n{\n\tint i;\n",
    );
    while s.lines().count() < 90 {
        s.push_str("\t/* stand-in */\n");
    }
    s.push_str(
        "}\n\nstatic void estimation_timer(struct timer_list *t)\n{\n\
         \tstruct netns_ipvs *ipvs = from_timer(ipvs, t, est_timer);\n\n\
         \tip_vs_walk_estimators(ipvs);\n\
         \tmod_timer(&ipvs->est_timer, jiffies + 2*HZ);\n}\n",
    );
    s
}

/// Build the stand-in mirror in `dir` (flat, indexed by createrepo_c).
fn el7_stand_in_mirror(work: &Path, dir: &Path) {
    let top = work.join("el7-rpmbuild");
    let sources = top.join("SOURCES");
    let tree_name = format!("linux-{EL7_VERSION}-{EL7_RELEASE}");
    let staging = work.join("el7-tree");
    let ipvs = staging.join(&tree_name).join("net/netfilter/ipvs");
    std::fs::create_dir_all(&ipvs).unwrap();
    std::fs::create_dir_all(&sources).unwrap();
    std::fs::write(ipvs.join("ip_vs_est.c"), stand_in_ip_vs_est_c()).unwrap();
    std::fs::write(
        staging.join(&tree_name).join("Makefile"),
        "VERSION = 3\nPATCHLEVEL = 10\nSUBLEVEL = 0\nEXTRAVERSION =\n",
    )
    .unwrap();
    ok(Command::new("tar")
        .arg("-cJf")
        .arg(sources.join(format!("{tree_name}.tar.xz")))
        .arg("-C")
        .arg(&staging)
        .arg(&tree_name));
    let spec = work.join("kernel.spec");
    std::fs::write(&spec, EL7_SPEC).unwrap();
    ok(Command::new("rpmbuild")
        .args(["-ba", "--nodeps", "--target", "x86_64", "--quiet"])
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .args(["--define", &format!("kver {EL7_VERSION}")])
        .args(["--define", &format!("krel {EL7_RELEASE}")])
        .args(["--define", "_binary_payload w1.gzdio"])
        .args(["--define", "_source_payload w1.gzdio"])
        .arg(&spec));
    std::fs::create_dir_all(dir).unwrap();
    for e in walkdir::WalkDir::new(&top).into_iter().flatten() {
        if e.path().extension().is_some_and(|x| x == "rpm") {
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
    }
    ok(Command::new("createrepo_c")
        .args(["--quiet", "--no-database"])
        .arg(dir));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        assert!(e.file_type().unwrap().is_file(), "{:?}", e.path());
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

const TWO_TARGET_RECIPE: &str = r#"
[hotfix]
id = 30001
name = "ipvs-estimation-timer"
summary = "Stop IPVS estimation_timer from walking all services in softirq"
description = "End-to-end test: one target's patch does not apply."
version = "1.0"
backend = "kpatch"

[[hotfix.changelog]]
date = "2026-11-23"
author = "khotfix kernel team <kernel-team@example.com>"
text = "Skip the est_list walk in IPVS estimation_timer; keep the timer armed."

# Stand-in CentOS 7 mirror: its tree's estimation_timer is not the one the
# patch was written for.
[[target]]
name = "centos7"
distro = "centos7"
backend = "kpatch"
ranges = [{ from = "3.10.0-1062", to = "3.10.0-1062.99" }]
patches = ["patches/0001-ipvs-estimation_timer-skip-est_list-walk.patch"]

[[target]]
name = "debian12"
distro = "debian12"
backend = "kbuild"
select = "newest"
ranges = [{ from = "6.1.0-1", to = "6.1.0-9999" }]
module_source = "debian12"
"#;

#[test]
fn a_patch_that_does_not_apply_fails_its_job_alone() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // Fixtures: the recipe, the real centos7 patch, the real debian12 module.
    let fx = w.join("recipe");
    let patch_name = "0001-ipvs-estimation_timer-skip-est_list-walk.patch";
    std::fs::create_dir_all(fx.join("patches")).unwrap();
    std::fs::copy(
        PathBuf::from(REPO)
            .join("patches/ipvs-estimation-timer/centos7")
            .join(patch_name),
        fx.join("patches").join(patch_name),
    )
    .unwrap();
    copy_dir(
        &PathBuf::from(REPO).join("patches/ipvs-estimation-timer/debian12"),
        &fx.join("debian12"),
    );
    let recipe = fx.join("ipvs.toml");
    std::fs::write(&recipe, TWO_TARGET_RECIPE).unwrap();

    // The stand-in vendor mirror, for every CentOS 7 repository.
    let mirror = w.join("mirror");
    el7_stand_in_mirror(w, &mirror);
    let http = Http::serve(&mirror);
    let mirrors = ["os-source", "updates-source", "debuginfo", "os", "updates"]
        .iter()
        .map(|r| format!("{r}={}", http.url()))
        .collect::<Vec<_>>()
        .join(" ");

    let out = w.join("out");
    let o = khotfix_run(
        &[recipe.to_str().unwrap(), "--from-repos"],
        &out,
        &[("KHOTFIX_MIRRORS", mirrors)],
    );
    let stderr = text(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "khotfix run: {}\n{stderr}",
        text(&o.stdout)
    );
    let r = report(&o);
    assert_eq!(
        (r["passed"].as_u64(), r["failed"].as_u64()),
        (Some(1), Some(1)),
        "{r:#}"
    );

    // The centos7 job failed at prepare, naming the patch, file and hunk,
    // and never reached build.
    let bad = job(&r, &format!("30001-centos7-{EL7_VERSION}-{EL7_RELEASE}"));
    assert_eq!(bad["status"], "failed", "{bad:#}");
    assert_eq!(stage(bad, "fetch").unwrap()["status"], "done", "{bad:#}");
    let prep = stage(bad, "prepare").expect("prepare stage in the report");
    assert_eq!(prep["status"], "failed", "{bad:#}");
    assert_eq!(bad["failed_stage"], "prepare", "{bad:#}");
    let err = bad["error"].as_str().expect("failed job has an error");
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    // The line of the patch's second hunk header (the one that cannot apply).
    let patch_text = std::fs::read_to_string(fx.join("patches").join(patch_name)).unwrap();
    let hunk2 = patch_text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("@@ "))
        .nth(1)
        .map(|(i, _)| i + 1)
        .expect("the patch has two hunks");
    for want in [
        format!("patches/{patch_name}:{hunk2}:"),
        "hunk #2 of net/netfilter/ipvs/ip_vs_est.c does not apply".to_string(),
    ] {
        assert!(err.contains(&want), "error lacks {want:?}: {err}");
    }
    assert!(
        ["build", "sign", "package", "verify"]
            .iter()
            .all(|s| stage(bad, s).is_none_or(|st| st["status"] != "done")),
        "the failed job went past prepare: {bad:#}"
    );
    let bad_id = bad["id"].as_str().unwrap();
    assert!(
        !out.join("jobs").join(bad_id).join("build").exists(),
        "the failed job has a build directory"
    );
    assert!(!out.join("verified").join(bad_id).exists());

    // The debian12 job passed and is published.
    let good = job(&r, "30001-debian12-");
    assert_eq!(good["status"], "passed", "{good:#}");
    let repo = out.join("repo");
    assert_eq!(
        repo_packages(&repo.join("deb12")),
        vec![good["package"].as_str().unwrap().to_string()]
    );
    let client = r["publish"]["client_repo"].as_str().unwrap_or_default();
    assert!(
        client.contains(&format!("{}/deb12/khotfix.repo", repo.display())),
        "the run's .repo line does not name the deb12 part: {client:?}"
    );
    let v = output(khotfix().args(["repo", "verify"]).arg(&repo));
    assert_eq!(
        v.status.code(),
        Some(0),
        "repo verify: {}\n{}",
        text(&v.stdout),
        text(&v.stderr)
    );
}

// ---- 3. a kernel the host does not have ------------------------------------

/// Issue 14: verify boots the kernel fetch downloaded, never the host's own
/// /boot or /lib/modules. The previous Debian ABI, which this host does not
/// have installed, builds, boots and verifies.
#[test]
fn a_kernel_the_host_does_not_have_verifies_from_fetched_packages() {
    let abi = debian_previous_abi();
    for p in [
        format!("/lib/modules/{abi}"),
        format!("/boot/vmlinuz-{abi}"),
    ] {
        assert!(
            !Path::new(&p).exists(),
            "{p} exists: this test needs an ABI the host does not have (remove linux-image-{abi})"
        );
    }
    let work = tempfile::tempdir().unwrap();
    let kernels = work.path().join("kernels.txt");
    std::fs::write(&kernels, format!("{abi}\n")).unwrap();
    let out = work.path().join("out");
    let o = khotfix_run(
        &[
            "recipes/ipvs-estimation-timer.toml",
            "--target",
            "debian12",
            "--kernels",
            kernels.to_str().unwrap(),
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
    let j = job(&r, "30001-debian12-6.");
    assert_eq!(j["kernel"], abi.as_str());
    let verify = boot_verified(&out, j);
    let (_, vermagic) = check(&verify, "vermagic");
    assert!(vermagic.contains(&abi), "{vermagic}");
}
