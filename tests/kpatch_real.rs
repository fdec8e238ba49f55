//! Opt-in and optional: the REAL kpatch-build (upstream dynup/kpatch), run
//! on the host from a checkout the developer provides.
//!
//! CI already runs the real kpatch-build: the debian12 builder image compiles
//! the pinned v0.9.11 (with khotfix's carried patch), and tests/run_e2e.rs
//! builds the recipe's debian12-kpatch target with it on Debian's current
//! kernel, module-only (`-t net/netfilter/ipvs/ip_vs.ko`), and boot-checks
//! it. What this test still adds: a *full* kpatch-build (no `-t`, so
//! `vmlinux modules`) on a small tree, outside any container, with whatever
//! kpatch checkout is given (e.g. a newer upstream before changing the pin).
//! It checks that the argument list khotfix builds for the prepared-tree
//! mode (`src/build/kpatch.rs`: `-s SRCDIR -c CONFIG -v VMLINUX -n
//! kpatch-<id> -o OUT -j N PATCH`, the debian12/alinux3 mode) makes a real
//! livepatch module that really patches a running kernel:
//!
//! 1. a small Debian 6.1 tree (Debian's linux-source-6.1, tinyconfig plus
//!    livepatch, DWARF, ORC, IP_VS=m), built by tests/kpatch-real/prepare.sh;
//! 2. kpatch-build run on the host with exactly the arguments
//!    `khotfix::build::kpatch::{fixed_flags, arguments}` produce, after
//!    `check_inputs`/`check_mode`, and its own CACHEDIR as the backend gives
//!    every job; the patch is tests/data/kpatch-real/0001-*.patch, the 6.1
//!    version of the recipe's IPVS estimation_timer diff;
//! 3. `modinfo` (kmod) on kpatch-30001.ko: livepatch Y, name kpatch_30001,
//!    the tree's vermagic;
//! 4. the tree's bzImage booted under qemu (TCG) with
//!    `khotfix::verify::qemu`: ip_vs loaded, the module inserted, and
//!    /sys/kernel/livepatch/kpatch_30001/ip_vs/patched = 1 with
//!    estimation_timer in the patched function list.
//!
//! Environment:
//! - `KHOTFIX_REAL_KPATCH_BUILD=/path/to/kpatch/kpatch-build/kpatch-build`
//!   (required; the test is `#[ignore]`d: run it with `-- --ignored`);
//! - `KHOTFIX_REAL_KPATCH_TREE=/path/to/linux-source-6.1` (optional: a tree
//!   prepare.sh made, reused; without it the test runs prepare.sh into
//!   `KHOTFIX_REAL_KPATCH_WORK`, default `$TMPDIR/khotfix-kpatch-real`, which
//!   builds the kernel: minutes);
//! - `KHOTFIX_REAL_KPATCH_JOBS` (kpatch-build -j, default 2).

mod support;

use khotfix::build::kpatch::{arguments, fixed_flags, KernelArgs};
use khotfix::build::{check_inputs, check_mode, BuildInputs, KernelInputs};
use khotfix::distro::{Distro, KpatchMode};
use khotfix::kernel::KernelRelease;
use khotfix::plan::Job;
use khotfix::recipe::Backend;
use khotfix::verify::qemu::{boot, QemuSpec};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::kernel::modinfo;

/// Run `cmd`, require success, its stdout trimmed.
fn output(cmd: &mut Command) -> String {
    support::process::run(cmd).trim().to_string()
}

/// The recipe's hotfix id (recipes/ipvs-estimation-timer.toml).
const HOTFIX: u64 = 30001;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn patch() -> PathBuf {
    repo().join("tests/data/kpatch-real/0001-ipvs-estimation_timer-skip-est_list-walk.patch")
}

/// The tree to use: the given one, or one prepare.sh makes now.
fn tree(kpatch_build: &Path) -> PathBuf {
    if let Some(t) = std::env::var_os("KHOTFIX_REAL_KPATCH_TREE") {
        return PathBuf::from(t);
    }
    // kpatch-build lives at <checkout>/kpatch-build/kpatch-build.
    let checkout = kpatch_build
        .parent()
        .and_then(Path::parent)
        .expect("KHOTFIX_REAL_KPATCH_BUILD must be <kpatch checkout>/kpatch-build/kpatch-build");
    let work = std::env::var_os("KHOTFIX_REAL_KPATCH_WORK")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("khotfix-kpatch-real"));
    eprintln!(
        "KHOTFIX_REAL_KPATCH_TREE not set: preparing a tree in {} (builds a kernel)",
        work.display()
    );
    let exports = output(
        Command::new(repo().join("tests/kpatch-real/prepare.sh"))
            .arg(checkout)
            .arg(&work),
    );
    let line = exports
        .lines()
        .find_map(|l| l.strip_prefix("export KHOTFIX_REAL_KPATCH_TREE="))
        .expect("prepare.sh printed the tree");
    PathBuf::from(line)
}

#[test]
#[ignore = "opt-in: set KHOTFIX_REAL_KPATCH_BUILD (see tests/kpatch-real/prepare.sh) and run with -- --ignored"]
fn real_kpatch_build_livepatches_estimation_timer() {
    let kpatch_build = std::env::var_os("KHOTFIX_REAL_KPATCH_BUILD").expect(
        "set KHOTFIX_REAL_KPATCH_BUILD=/path/to/kpatch-build (and optionally \
         KHOTFIX_REAL_KPATCH_TREE); see tests/kpatch-real/prepare.sh",
    );
    let kpatch_build = PathBuf::from(kpatch_build);
    assert!(
        kpatch_build.is_file(),
        "KHOTFIX_REAL_KPATCH_BUILD={} is not a file",
        kpatch_build.display()
    );
    let tree = tree(&kpatch_build);
    let pristine = tree.join("khotfix-pristine");
    for f in ["Makefile", "Module.symvers"] {
        assert!(
            tree.join(f).is_file(),
            "{} has no {f}: not a built tree (run tests/kpatch-real/prepare.sh)",
            tree.display()
        );
    }
    for f in ["vmlinux", "config", "bzImage"] {
        assert!(
            pristine.join(f).is_file(),
            "{} has no {f} (run tests/kpatch-real/prepare.sh)",
            pristine.display()
        );
    }
    let krel = output(
        Command::new("make")
            .args(["-s", "--no-print-directory", "kernelrelease"])
            .current_dir(&tree),
    );
    let tree_vermagic = modinfo(&tree.join("net/netfilter/ipvs/ip_vs.ko"), "vermagic");
    assert!(
        tree_vermagic.starts_with(&format!("{krel} ")),
        "tree's ip_vs.ko vermagic {tree_vermagic:?} is not for {krel}"
    );

    // The job khotfix would plan for this kernel: debian12 uses kpatch's
    // prepared-tree mode (-s/-c/-v), the mode this test exercises.
    let distro = Distro::builtin("debian12").unwrap();
    assert_eq!(distro.kpatch_mode, KpatchMode::PreparedTree);
    let abi = khotfix::verify::qemu::debian_kernel_abi().unwrap();
    let kernel = KernelRelease::parse(&abi).unwrap();
    let job = Job {
        id: format!("{HOTFIX}-debian12-{abi}"),
        recipe: repo().join("recipes/ipvs-estimation-timer.toml"),
        hotfix_id: HOTFIX,
        hotfix_name: "ipvs-estimation-timer".into(),
        target: "debian12".into(),
        distro: "debian12".into(),
        backend: Backend::Kpatch,
        package: format!("kernel-hotfix-{HOTFIX}-{}", kernel.package_suffix()),
        kernel,
    };
    let inputs = BuildInputs {
        job: job.clone(),
        kernel: KernelInputs::PreparedTree {
            targets: vec![],
            source: tree.clone(),
            config: pristine.join("config"),
            vmlinux: pristine.join("vmlinux"),
        },
        kernel_digests: vec![],
        patches: vec![patch()],
        module_source: None,
        skip_compiler_check: false,
    };
    check_inputs(&inputs).unwrap();
    check_mode(&inputs, &distro).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let cachedir = tmp.path().join("kpatch-cache");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&cachedir).unwrap();
    let jobs: usize = std::env::var("KHOTFIX_REAL_KPATCH_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(2);
    let s = |p: &Path| p.to_str().expect("UTF-8 path").to_string();
    let args = arguments(
        &KernelArgs::PreparedTree {
            targets: vec![],
            source: s(&tree),
            config: s(&pristine.join("config")),
            vmlinux: s(&pristine.join("vmlinux")),
        },
        &fixed_flags(&distro, &job, inputs.skip_compiler_check),
        &s(&out),
        jobs,
        &[s(&patch())],
    );
    // The contract the stand-in enforces, checked here on the real run too.
    assert_eq!(
        &args[..6],
        [
            "-s",
            &s(&tree),
            "-c",
            &s(&pristine.join("config")),
            "-v",
            &s(&pristine.join("vmlinux"))
        ]
    );
    assert!(args.windows(2).any(|w| w == ["-n", "kpatch-30001"]));
    eprintln!("running {} {}", kpatch_build.display(), args.join(" "));
    let log = tmp.path().join("kpatch-build.log");
    let started = Instant::now();
    let status = Command::new("nice")
        .arg("-n10")
        .arg(&kpatch_build)
        .args(&args)
        .env("CACHEDIR", &cachedir)
        .current_dir(&out)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(tmp.path().join("kpatch-build.err")).unwrap())
        .status()
        .unwrap();
    let took = started.elapsed();
    let tail = |p: &Path| {
        let t = std::fs::read_to_string(p).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    eprintln!("kpatch-build: {status} after {:.0} s", took.as_secs_f64());
    assert!(
        status.success(),
        "kpatch-build failed ({status}) after {:.0} s\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- CACHEDIR/build.log ---\n{}",
        took.as_secs_f64(),
        tail(&log),
        tail(&tmp.path().join("kpatch-build.err")),
        tail(&cachedir.join("build.log"))
    );

    eprintln!("kpatch-build output:\n{}", tail(&log));

    // The module: kpatch-<id>.ko, a livepatch module for the tree's kernel.
    let ko = out.join(format!("kpatch-{HOTFIX}.ko"));
    assert!(
        ko.is_file(),
        "kpatch-build succeeded but {} is missing",
        ko.display()
    );
    assert_eq!(modinfo(&ko, "livepatch"), "Y");
    assert_eq!(modinfo(&ko, "name"), format!("kpatch_{HOTFIX}"));
    assert_eq!(modinfo(&ko, "vermagic"), tree_vermagic);
    let info = khotfix::build::modinfo::read(&ko).unwrap();
    assert_eq!(info.kernel_release(), Some(krel.as_str()));
    eprintln!(
        "built {} ({} bytes), vermagic {tree_vermagic:?}",
        ko.display(),
        std::fs::metadata(&ko).unwrap().len()
    );

    // Load it into the tree's kernel under qemu and check that it patched
    // ip_vs's estimation_timer.
    let script = format!(
        "lp=/sys/kernel/livepatch/kpatch_{HOTFIX}\n\
         echo \"KHOTFIX-RESULT uname=$(uname -r)\"\n\
         test -d /sys/module/ip_vs && echo KHOTFIX-RESULT ip_vs=loaded\n\
         insmod /root/kpatch-{HOTFIX}.ko\n\
         echo \"KHOTFIX-RESULT insmod=$?\"\n\
         i=0\n\
         while [ \"$(cat $lp/transition 2>/dev/null)\" = 1 ] && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done\n\
         echo \"KHOTFIX-RESULT enabled=$(cat $lp/enabled 2>/dev/null || echo missing)\"\n\
         echo \"KHOTFIX-RESULT transition=$(cat $lp/transition 2>/dev/null || echo missing)\"\n\
         echo \"KHOTFIX-RESULT patched=$(cat $lp/ip_vs/patched 2>/dev/null || echo missing)\"\n\
         echo \"KHOTFIX-RESULT funcs=$(ls $lp/ip_vs 2>/dev/null | grep , | tr '\\n' ' ')\"\n\
         sync\n\
         # no ACPI in the tiny kernel: reboot (qemu -no-reboot exits) instead of powering off\n\
         reboot -f\n"
    );
    let mut spec = QemuSpec::new(pristine.join("bzImage"), script);
    spec.modules_dir = Some(pristine.join("lib/modules").join(&krel));
    spec.modules = vec!["ip_vs".into()];
    spec.files = vec![(ko.clone(), format!("/root/kpatch-{HOTFIX}.ko"))];
    spec.timeout = Duration::from_secs(240);
    spec.memory_mib = 512;
    spec.log = Some(tmp.path().join("console.log"));
    let run = boot(&spec).unwrap();
    let console_tail = {
        let lines: Vec<&str> = run.console.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    eprintln!(
        "qemu: {:.0} s, results {:?}",
        run.elapsed.as_secs_f64(),
        run.results
    );
    let r = |k: &str| run.results.get(k).map(String::as_str);
    assert_eq!(r("uname"), Some(krel.as_str()), "console:\n{console_tail}");
    assert_eq!(r("ip_vs"), Some("loaded"), "console:\n{console_tail}");
    assert_eq!(r("insmod"), Some("0"), "console:\n{console_tail}");
    assert_eq!(r("enabled"), Some("1"), "console:\n{console_tail}");
    assert_eq!(r("transition"), Some("0"), "console:\n{console_tail}");
    assert_eq!(r("patched"), Some("1"), "console:\n{console_tail}");
    assert!(
        r("funcs").unwrap_or("").contains("estimation_timer,"),
        "estimation_timer not among the patched functions; console:\n{console_tail}"
    );
}
