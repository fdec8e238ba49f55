//! End to end: boot Debian's own kernel (ABI from apt-cache) under qemu/TCG
//! with an initramfs holding khotfix (and its shared libraries), ip_vs with
//! its dependencies, the generated node script, and the ipvs livepatch module
//! built here with kbuild from patches/ipvs-estimation-timer/debian12 against
//! linux-headers-<abi>. In the guest: `node check` says needs-hotfix (1),
//! `node apply --yes --ko` loads the module and waits for the transition,
//! /sys/kernel/livepatch/kpatch_30001/ip_vs/patched reads 1, and `node check`
//! (and the generated sh script under busybox) then exit 0. Once with
//! `khotfix node …`, once with `khotfix-node …` (each its own boot).

mod support;

use khotfix::verify::qemu::{boot, debian_kernel_abi, QemuSpec};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Build kpatch-30001.ko with kbuild against Debian's headers.
fn build_livepatch(abi: &str, work: &Path) -> PathBuf {
    let src = Path::new(ROOT).join("patches/ipvs-estimation-timer/debian12");
    assert!(
        src.join("livepatch.c").is_file(),
        "{} missing",
        src.display()
    );
    let dir = work.join("ipvs-livepatch");
    copy_dir(&src, &dir);
    let kdir = format!("/usr/src/linux-headers-{abi}");
    let out = Command::new("make")
        .arg("-C")
        .arg(&kdir)
        .arg(format!("M={}", dir.display()))
        .arg("modules")
        .output()
        .expect("make");
    assert!(
        out.status.success(),
        "kbuild failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ko = dir.join("kpatch-30001.ko");
    assert!(ko.is_file(), "no {} after kbuild", ko.display());
    ko
}

#[test]
fn apply_loads_the_ipvs_livepatch_in_a_debian_guest() {
    e2e(
        env!("CARGO_BIN_EXE_khotfix"),
        "/bin/khotfix",
        "/bin/khotfix node",
    );
}

#[test]
fn khotfix_node_apply_loads_the_ipvs_livepatch_in_a_debian_guest() {
    e2e(
        env!("CARGO_BIN_EXE_khotfix-node"),
        "/bin/khotfix-node",
        "/bin/khotfix-node",
    );
}

/// Boot the guest with `bin` at `guest_path`; `node` runs a node command there.
fn e2e(bin: &str, guest_path: &str, node: &str) {
    let abi = debian_kernel_abi().expect("apt-cache depends linux-image-amd64");
    let work = tempfile::tempdir().unwrap();
    let ko = build_livepatch(&abi, work.path());

    // The module khotfix will load really is for this kernel.
    let mi = khotfix::node::modinfo::read(&ko).unwrap();
    assert_eq!(mi.kernel_release(), Some(abi.as_str()));
    assert_eq!(mi.name(), Some("kpatch_30001"));
    assert!(mi.is_livepatch());

    let recipe = Path::new(ROOT).join("recipes/ipvs-estimation-timer.toml");
    let script = work.path().join("hotfix.sh");
    support::node::script(&recipe, &script);

    let guest = format!("K=\"{node}\"\n")
        + r#"
R=/recipes/ipvs-estimation-timer.toml
$K check --recipe $R
echo "KHOTFIX-RESULT check_before=$?"
sh /hotfix.sh >/dev/null
echo "KHOTFIX-RESULT script_before=$?"
$K apply --recipe $R --yes --ko /kpatch-30001.ko --timeout 120
echo "KHOTFIX-RESULT apply=$?"
echo "KHOTFIX-RESULT patched=$(cat /sys/kernel/livepatch/kpatch_30001/ip_vs/patched)"
echo "KHOTFIX-RESULT enabled=$(cat /sys/kernel/livepatch/kpatch_30001/enabled)"
echo "KHOTFIX-RESULT transition=$(cat /sys/kernel/livepatch/kpatch_30001/transition)"
$K check --recipe $R
echo "KHOTFIX-RESULT check_after=$?"
echo "KHOTFIX-RESULT verdict_after=$($K check --json --recipe $R | grep '"verdict"' | cut -d'"' -f4)"
sh /hotfix.sh
echo "KHOTFIX-RESULT script_after=$?"
$K apply --recipe $R --yes --ko /kpatch-30001.ko
echo "KHOTFIX-RESULT apply_again=$?"
"#;
    let mut spec = QemuSpec::new(format!("/boot/vmlinuz-{abi}"), &guest);
    spec.modules_dir = Some(format!("/lib/modules/{abi}").into());
    spec.modules = vec!["ip_vs".into()];
    spec.binaries.push((PathBuf::from(bin), guest_path.into()));
    spec.files.push((ko, "/kpatch-30001.ko".into()));
    spec.files
        .push((recipe, "/recipes/ipvs-estimation-timer.toml".into()));
    spec.files.push((script, "/hotfix.sh".into()));
    spec.timeout = Duration::from_secs(400);
    spec.log = Some(work.path().join("console.log"));
    let run = boot(&spec).expect("qemu boot");
    let r = |k: &str| run.results.get(k).cloned().unwrap_or_default();
    let ctx = format!("console:\n{}", run.console);
    eprintln!("guest finished in {:?}; {ctx}", run.elapsed);
    assert!(!run.timed_out, "timed out; {ctx}");
    assert_eq!(r("check_before"), "1", "{ctx}");
    assert_eq!(r("script_before"), "1", "{ctx}");
    assert_eq!(r("apply"), "0", "{ctx}");
    assert_eq!(r("patched"), "1", "{ctx}");
    assert_eq!(r("enabled"), "1", "{ctx}");
    assert_eq!(r("transition"), "0", "{ctx}");
    assert_eq!(r("check_after"), "0", "{ctx}");
    assert_eq!(r("verdict_after"), "fixed", "{ctx}");
    assert_eq!(r("script_after"), "0", "{ctx}");
    assert_eq!(r("apply_again"), "0", "nothing to do once fixed; {ctx}");
    assert!(run.console.contains("applied: fixed: kernel"), "{ctx}");
}
