//! kpatch backend contract. kpatch-build cannot be installed here, so a
//! STAND-IN (tests/stand-ins/kpatch-build) is mounted over it in the debian12
//! builder and run through the real container runtime. The stand-in checks
//! every argument, file and environment variable against kpatch-build's
//! documented interface and fails on anything else; the real kpatch-build
//! runs in the centos7 and alinux3 builder images.

mod support;

use support::kernel::modinfo;

use khotfix::build::cache::BuildCache;
use khotfix::build::container::{Engine, RunSpec};
use khotfix::build::{self as stage, BuildInputs, BuildSettings, KernelInputs};
use khotfix::kernel::KernelRelease;
use khotfix::plan::Job;
use khotfix::recipe::Backend;
use std::path::{Path, PathBuf};
use std::process::Command;

const HOTFIX: u64 = 22519882;

fn stand_in() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stand-ins/kpatch-build")
}

fn patch() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kpatch/ip_vs_est-skip-walk.patch")
}

fn job(distro: &str, kernel: &str) -> Job {
    let k = KernelRelease::parse(kernel).unwrap();
    Job {
        id: format!("{HOTFIX}-{distro}-{kernel}"),
        recipe: "recipe.toml".into(),
        hotfix_id: HOTFIX,
        hotfix_name: "ipvs-estimation-timer".into(),
        target: distro.into(),
        distro: distro.into(),
        backend: Backend::Kpatch,
        package: format!("kernel-hotfix-{HOTFIX}-{}", k.package_suffix()),
        kernel: k,
    }
}

struct Env {
    engine: Engine,
    image: String,
    tmp: tempfile::TempDir,
}

fn setup() -> Env {
    let engine = support::container::engine();
    let tmp = tempfile::tempdir().unwrap();
    let image = support::container::debian12_builder(&engine, &tmp.path().join("logs"));
    Env { engine, image, tmp }
}

fn settings(e: &Env) -> BuildSettings {
    let t = e.tmp.path();
    BuildSettings {
        out_dir: t.join("out"),
        work_dir: t.join("work"),
        log_dir: t.join("logs"),
        make_jobs: 2,
        timeout: Some(std::time::Duration::from_secs(300)),
        cache: Some(BuildCache::new(t.join("cache"))),
        image: Some(e.image.clone()),
        kpatch_build: Some(stand_in()),
    }
}

/// A source RPM lead (magic, v3.0, type 1 = source) padded to 96 bytes.
fn fake_srpm(dir: &Path, name: &str) -> PathBuf {
    let mut lead = vec![0xed, 0xab, 0xee, 0xdb, 3, 0, 0, 1];
    lead.resize(96, 0);
    let p = dir.join(name);
    std::fs::write(&p, lead).unwrap();
    p
}

fn fake_vmlinux(dir: &Path, release: &str, gcc: &str) -> PathBuf {
    let p = dir.join(format!("vmlinux-{release}"));
    let mut b = b"\x7fELF\x02\x01\x01\0 padding ".to_vec();
    b.extend(format!("Linux version {release} (builder@khotfix) ({gcc}) #1 SMP\0").as_bytes());
    b.extend(format!("\0{gcc}\0").as_bytes());
    std::fs::write(&p, b).unwrap();
    p
}

fn fail(s: &BuildSettings, j: &Job, err: anyhow::Error) -> ! {
    let log = std::fs::read_to_string(s.log_dir.join(format!("{}.log", j.id))).unwrap_or_default();
    panic!("{err:#}\n--- log ---\n{log}")
}

/// The job's scratch: `<work_dir>/<job id>-<cache key prefix>`.
fn job_scratch(s: &BuildSettings, job: &Job) -> PathBuf {
    let prefix = format!("{}-", job.id);
    std::fs::read_dir(&s.work_dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
        })
        .unwrap_or_else(|| panic!("no scratch for {} in {}", job.id, s.work_dir.display()))
}

fn invocation(s: &BuildSettings, job: &Job) -> Vec<String> {
    let p = job_scratch(s, job).join("kpatch-cache/stand-in-invocation.txt");
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

fn args_of(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("ARG="))
        .map(str::to_string)
        .collect()
}

/// The gcc identification string of the builder's compiler (what vmlinux's
/// .comment must carry for kpatch-build's compiler check to pass).
fn builder_gcc(e: &Env) -> String {
    let log = e.tmp.path().join("gcc.log");
    let spec = RunSpec {
        image: e.image.clone(),
        name_prefix: "gcc-version".into(),
        mounts: vec![],
        env: vec![],
        workdir: None,
        command: vec!["sh".into(), "-c".into(), "echo 'void f(void){}' > /tmp/t.c && gcc -c -o /tmp/t.o /tmp/t.c && readelf -p .comment /tmp/t.o".into()],
        timeout: Some(std::time::Duration::from_secs(120)),
        output_dirs: vec![],
        log: log.clone(),
    };
    assert_eq!(
        e.engine
            .run(&spec, &khotfix::progress::Quiet)
            .unwrap()
            .exit_code,
        0
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.find("GCC:").map(|i| l[i..].trim().to_string()))
        .expect("GCC comment");
    line
}

#[test]
fn centos7_srpm_mode_through_the_container() {
    let e = setup();
    let s = settings(&e);
    let kernel = "3.10.0-1062.9.1.el7.x86_64";
    let j = job("centos7", kernel);
    let srpm = fake_srpm(e.tmp.path(), "kernel-3.10.0-1062.9.1.el7.src.rpm");
    let vmlinux = fake_vmlinux(
        e.tmp.path(),
        kernel,
        "GCC: (GNU) 4.8.5 20150623 (Red Hat 4.8.5-39)",
    );
    let inputs = BuildInputs {
        job: j.clone(),
        kernel: KernelInputs::Srpm {
            srpm: srpm.clone(),
            vmlinux: vmlinux.clone(),
        },
        kernel_digests: vec![],
        patches: vec![patch()],
        module_source: None,
        // The builder's gcc is not 4.8.5: the recipe asks to skip the check.
        skip_compiler_check: true,
    };
    let out = stage::build_job(&e.engine, &inputs, &s, &khotfix::progress::Quiet)
        .unwrap_or_else(|err| fail(&s, &j, err));
    let lines = invocation(&s, &j);
    assert_eq!(
        args_of(&lines),
        [
            "-r",
            "/in/kernel/kernel-3.10.0-1062.9.1.el7.src.rpm",
            "-v",
            "/in/kernel/vmlinux",
            "-R",
            "-n",
            "kpatch-22519882",
            "--skip-compiler-check",
            "-o",
            "/out",
            "-j",
            "2",
            "/in/patches/01-ip_vs_est-skip-walk.patch"
        ]
    );
    assert!(
        lines.contains(&"CACHEDIR=/kpatch-cache".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"CCACHE_DIR=/ccache".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!("ARCHVERSION={kernel}")),
        "{lines:?}"
    );
    assert_eq!(modinfo(&out.module, "name"), "kpatch_22519882");
    assert!(modinfo(&out.module, "vermagic").starts_with(&format!("{kernel} ")));
    assert_eq!(modinfo(&out.module, "livepatch"), "Y");
    // Per-job CACHEDIR, ccache shared per kernel.
    assert!(job_scratch(&s, &j).join("kpatch-cache").is_dir());
    assert!(s.work_dir.join("ccache").join(kernel).is_dir());

    // Same inputs again: cache hit, the stand-in is not run.
    let invoked = job_scratch(&s, &j).join("kpatch-cache/stand-in-invocation.txt");
    std::fs::remove_file(&invoked).unwrap();
    let again = stage::build_job(&e.engine, &inputs, &s, &khotfix::progress::Quiet).unwrap();
    assert!(again.cache_hit);
    assert!(!invoked.exists());

    // Without --skip-compiler-check the (strict) compiler check fails the
    // job, and the failure names the logs.
    let strict = BuildInputs {
        skip_compiler_check: false,
        ..inputs
    };
    let err = stage::build_job(&e.engine, &strict, &s, &khotfix::progress::Quiet).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("kpatch-build failed (exit 1)"), "{msg}");
    let log = std::fs::read_to_string(s.log_dir.join(format!("{}.log", j.id))).unwrap();
    assert!(log.contains("gcc/kernel version mismatch"), "{log}");
}

#[test]
fn alinux3_prepared_tree_mode_through_the_container() {
    let e = setup();
    let s = settings(&e);
    let kernel = "5.10.134-18.al8.x86_64";
    let j = job("alinux3", kernel);
    let src = e.tmp.path().join("linux-5.10.134-18.al8");
    std::fs::create_dir_all(src.join("net/netfilter/ipvs")).unwrap();
    std::fs::write(
        src.join("Makefile"),
        "VERSION = 5\nPATCHLEVEL = 10\nSUBLEVEL = 134\n",
    )
    .unwrap();
    let config = e.tmp.path().join("config");
    std::fs::write(
        &config,
        "CONFIG_DEBUG_INFO=y\nCONFIG_LIVEPATCH=y\nCONFIG_MODULES=y\n",
    )
    .unwrap();
    let vmlinux = fake_vmlinux(e.tmp.path(), kernel, &builder_gcc(&e));
    let inputs = BuildInputs {
        job: j.clone(),
        kernel: KernelInputs::PreparedTree {
            targets: vec![],
            source: src,
            config,
            vmlinux,
        },
        kernel_digests: vec![("kernel-5.10.134-18.al8.src.rpm".into(), "ab".repeat(32))],
        patches: vec![patch()],
        module_source: None,
        skip_compiler_check: false,
    };
    let out = stage::build_job(&e.engine, &inputs, &s, &khotfix::progress::Quiet)
        .unwrap_or_else(|err| fail(&s, &j, err));
    assert_eq!(
        args_of(&invocation(&s, &j)),
        [
            "-s",
            "/in/src",
            "-c",
            "/in/kernel/config",
            "-v",
            "/in/kernel/vmlinux",
            "-n",
            "kpatch-22519882",
            "-o",
            "/out",
            "-j",
            "2",
            "/in/patches/01-ip_vs_est-skip-walk.patch"
        ]
    );
    assert_eq!(modinfo(&out.module, "name"), "kpatch_22519882");
    assert!(modinfo(&out.module, "vermagic").starts_with(&format!("{kernel} ")));

    // Mismatched inputs are refused before any container starts.
    let wrong = BuildInputs {
        kernel: KernelInputs::Srpm {
            srpm: fake_srpm(e.tmp.path(), "kernel-5.10.134-18.al8.src.rpm"),
            vmlinux: e.tmp.path().join("config"),
        },
        ..inputs
    };
    let err = stage::build_job(&e.engine, &wrong, &s, &khotfix::progress::Quiet).unwrap_err();
    assert!(format!("{err:#}").contains("kpatch mode"), "{err:#}");
}

/// The stand-in itself refuses what kpatch-build (or khotfix's contract)
/// would not accept. Run directly: these checks come before any compiling.
#[test]
fn stand_in_is_strict() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let kernel = "3.10.0-1062.9.1.el7.x86_64";
    let srpm = fake_srpm(t, "kernel-3.10.0-1062.9.1.el7.src.rpm");
    let vmlinux = fake_vmlinux(t, kernel, "GCC: (GNU) 4.8.5");
    for d in ["cache", "ccache", "out"] {
        std::fs::create_dir(t.join(d)).unwrap();
    }
    let run = |args: &[&str], env: &[(&str, &Path)]| {
        let mut c = Command::new(stand_in());
        c.args(args).env_remove("CACHEDIR").env_remove("CCACHE_DIR");
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let p = patch();
    let (srpm, vml, pp) = (
        srpm.to_str().unwrap(),
        vmlinux.to_str().unwrap(),
        p.to_str().unwrap(),
    );
    let out = t.join("out");
    let o = out.to_str().unwrap();
    let good_env: &[(&str, &Path)] = &[
        ("CACHEDIR", &t.join("cache")),
        ("CCACHE_DIR", &t.join("ccache")),
    ];
    let base = [
        "-r",
        srpm,
        "-v",
        vml,
        "-n",
        "kpatch-22519882",
        "--skip-compiler-check",
        "-o",
        o,
        "-j",
        "2",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter()
            .map(|s| s.to_string())
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    type Case<'a> = (Vec<String>, &'a [(&'a str, &'a Path)], &'a str);
    let cases: Vec<Case> = vec![
        (with(&["-R"]), &[], "CACHEDIR is not set"),
        (
            with(&[]).into_iter().chain([pp.to_string()]).collect(),
            good_env,
            "needs -R",
        ),
        (
            with(&["-R", "--skip-cleanup"])
                .into_iter()
                .chain([pp.to_string()])
                .collect(),
            good_env,
            "never passes",
        ),
        (
            with(&["-R", "--bogus"])
                .into_iter()
                .chain([pp.to_string()])
                .collect(),
            good_env,
            "getopt failed",
        ),
        (
            with(&["-R", "/nonexistent.patch"]),
            good_env,
            "patch file '/nonexistent.patch' not found",
        ),
        (with(&["-R"]), good_env, "no patch file(s) specified"),
        (
            with(&["-R", "-j", "3"])
                .into_iter()
                .chain([pp.to_string()])
                .collect(),
            good_env,
            "given twice",
        ),
        (
            with(&["-R", "-c", "/etc/hostname"])
                .into_iter()
                .chain([pp.to_string()])
                .collect(),
            good_env,
            "not combined",
        ),
    ];
    for (args, env, want) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, err) = run(&a, env);
        assert_eq!(code, Some(1), "{a:?} should fail");
        assert!(err.contains(want), "{a:?}: expected {want:?} in {err:?}");
    }
    // A binary RPM named like a source RPM is refused.
    let mut lead = vec![0xed, 0xab, 0xee, 0xdb, 3, 0, 0, 0];
    lead.resize(96, 0);
    std::fs::write(t.join("kernel-3.10.0-1062.9.1.el7.src.rpm"), lead).unwrap();
    let (code, err) = run(
        &with(&["-R", pp])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        good_env,
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("binary RPM"), "{err}");
}
