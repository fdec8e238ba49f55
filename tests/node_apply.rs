//! `node apply` (and the script's `-y`): dry run prints exactly the steps,
//! `--yes` runs the package manager through `chroot ROOT` and waits for the
//! livepatch; `.ko` files built for another kernel are refused.
//!
//! Stand-in: dnf. Installing an Alibaba Cloud Linux package into a fake root
//! cannot happen on this Debian machine (no al8 repository), so the fake
//! root's /usr/bin/dnf is a busybox sh script that checks its arguments
//! strictly (exactly `install -y kernel-hotfix-22519882-<kver>`) and does what
//! the package's scriptlet does to sysfs: creates
//! /sys/kernel/livepatch/kpatch_22519882/{enabled,transition}. chroot and the
//! wait loop are real.

mod support;

use support::node_bins;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use support::node::RECIPE;
const CT4: &str = "/sys/fs/bpf/tc/globals/cilium_ct4_global";
const LP: &str = "/sys/kernel/livepatch/kpatch_22519882";

fn write(root: &Path, p: &str, t: &str, mode: u32) {
    let f = root.join(p.trim_start_matches('/'));
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(&f, t).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A fake al8 root; `pm` = Some(("dnf", transition)) installs the stand-in.
fn fake_root(rel: &str, pm: Option<(&str, &str)>) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write(r, "/proc/sys/kernel/osrelease", &format!("{rel}\n"), 0o644);
    write(r, "/proc/modules", "ext4 1003520 1 - Live 0x0\n", 0o644);
    write(r, CT4, "", 0o644);
    if let Some((name, transition)) = pm {
        std::fs::create_dir_all(r.join("bin")).unwrap();
        std::fs::copy("/usr/bin/busybox", r.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", r.join("bin/sh")).unwrap();
        let kver = rel.split(".al8").next().unwrap();
        let script = format!(
            "#!/bin/sh\n\
             [ \"$#\" = 3 ] && [ \"$1\" = install ] && [ \"$2\" = -y ] && [ \"$3\" = kernel-hotfix-22519882-{kver} ] || {{ echo \"stand-in {name}: unexpected arguments: $*\" >&2; exit 64; }}\n\
             /bin/busybox mkdir -p {LP}\n\
             echo 1 > {LP}/enabled\n\
             echo {transition} > {LP}/transition\n\
             echo \"stand-in {name}: installed $3\"\n"
        );
        write(r, &format!("/usr/bin/{name}"), &script, 0o755);
    }
    t
}

/// `apply` with both binaries, each on its own copy of the root (it acts).
fn run(args: &[&str], root: &Path) -> (i32, String, String) {
    let out = node_bins::output_on_copies(
        root,
        |r| {
            let mut v: Vec<std::ffi::OsString> = vec![
                "apply".into(),
                "--recipe".into(),
                RECIPE.into(),
                "--root".into(),
            ];
            v.push(r.into());
            v.extend(args.iter().map(Into::into));
            v
        },
        |_| {},
    );
    support::bin::code_out_err(out)
}

#[test]
fn dry_run_prints_exactly_the_commands() {
    let t = fake_root("5.10.134-18.al8.x86_64", Some(("dnf", "0")));
    let (code, out, _) = run(&[], t.path());
    assert_eq!(code, 1, "{out}");
    let root = t.path().display();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "would run: chroot {root} /usr/bin/dnf install -y kernel-hotfix-22519882-5.10.134-18"
        )
    );
    assert_eq!(lines[1], "would run: wait up to 60s for /sys/kernel/livepatch/kpatch_22519882/enabled=1 and transition=0");
    assert!(lines[2].starts_with("dry run: needs-hotfix: "), "{out}");
    assert!(
        !t.path().join(LP.trim_start_matches('/')).exists(),
        "dry run must not act"
    );
}

#[test]
fn yum_is_used_when_there_is_no_dnf() {
    let t = fake_root("5.10.134-19.1.al8.x86_64", Some(("yum", "0")));
    let (code, out, _) = run(&["--json"], t.path());
    assert_eq!(code, 1);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["steps"][0]["argv"][2], "/usr/bin/yum");
    assert_eq!(
        j["steps"][0]["argv"][5],
        "kernel-hotfix-22519882-5.10.134-19.1"
    );
    assert_eq!(j["acted"], false);
}

/// Issue 16 item 15: the dry run without a package manager still answers
/// "needs the hotfix" (exit 1) and says the install would fail, as the
/// generated script does; only `--yes` is an error.
#[test]
fn no_package_manager_dry_run_would_fail_and_yes_is_an_error() {
    let t = fake_root("5.10.134-18.al8.x86_64", None);
    let (code, out, err) = run(&[], t.path());
    assert_eq!(code, 1, "{out}{err}");
    let first = out.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!(
            "would fail: neither dnf nor yum is installed under {}",
            t.path().display()
        )
    );
    assert!(out.contains("dry run: needs-hotfix: "), "{out}");
    let (code, _, err) = run(&["--yes"], t.path());
    assert_eq!(code, 2);
    assert!(err.contains("neither dnf nor yum"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn nothing_to_do_and_unfixable_keep_their_codes() {
    let t = fake_root("5.10.134-19.2.al8.x86_64", Some(("dnf", "0")));
    let (code, out, _) = run(&["--yes"], t.path());
    assert_eq!(code, 0);
    assert!(out.starts_with("nothing to do: not-affected"), "{out}");
    let t = fake_root("5.10.134-18.0.1.lifsea8.x86_64", Some(("dnf", "0")));
    let (code, out, _) = run(&["--yes"], t.path());
    assert_eq!(code, 3, "{out}");
    assert!(!t.path().join(LP.trim_start_matches('/')).exists());
}

#[test]
fn yes_installs_through_chroot_and_waits_for_the_livepatch() {
    let t = fake_root("5.10.134-18.al8.x86_64", Some(("dnf", "0")));
    let (code, out, err) = run(&["--yes", "--timeout", "5"], t.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("stand-in dnf: installed kernel-hotfix-22519882-5.10.134-18"),
        "{out}"
    );
    assert!(
        out.trim_end().ends_with(
            "applied: fixed: kernel 5.10.134-18.al8.x86_64 is affected and kpatch_22519882 is live"
        ),
        "{out}"
    );
    // The check agrees afterwards.
    let c = node_bins::both()
        .args(["check", "--recipe", RECIPE, "--root"])
        .arg(t.path())
        .output()
        .unwrap();
    assert_eq!(c.status.code(), Some(0));
}

#[test]
fn a_transition_that_never_finishes_times_out() {
    let t = fake_root("5.10.134-18.al8.x86_64", Some(("dnf", "1")));
    let (code, _, err) = run(&["--yes", "--timeout", "1"], t.path());
    assert_eq!(code, 2);
    assert!(
        err.contains("timed out after 1s waiting for kpatch_22519882: enabled=1, transition=1"),
        "{err}"
    );
}

#[test]
fn script_dash_y_does_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.sh");
    support::node::script(RECIPE, &script);
    let t = fake_root("5.10.134-18.al8.x86_64", Some(("dnf", "0")));
    let dry = Command::new("dash")
        .arg(&script)
        .arg("-r")
        .arg(t.path())
        .output()
        .unwrap();
    assert_eq!(dry.status.code(), Some(1));
    let rust_dry = run(&[], t.path()).1;
    assert_eq!(
        String::from_utf8_lossy(&dry.stdout).lines().next(),
        rust_dry.lines().next(),
        "same install command"
    );
    let out = Command::new("dash")
        .arg(&script)
        .args(["-y", "-t", "5", "-r"])
        .arg(t.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.trim_end().ends_with(
            "applied: fixed: kernel 5.10.134-18.al8.x86_64 is affected and kpatch_22519882 is live"
        ),
        "{stdout}"
    );
    let t = fake_root("5.10.134-18.al8.x86_64", Some(("dnf", "1")));
    let out = Command::new("dash")
        .arg(&script)
        .args(["-y", "-t", "1", "-r"])
        .arg(t.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn applying_waits_instead_of_installing() {
    let t = fake_root("5.10.134-18.al8.x86_64", Some(("dnf", "0")));
    write(t.path(), &format!("{LP}/enabled"), "1\n", 0o644);
    write(t.path(), &format!("{LP}/transition"), "1\n", 0o644);
    let (code, out, _) = run(&[], t.path());
    assert_eq!(code, 0);
    assert_eq!(out.lines().next().unwrap(), "would run: wait up to 60s for /sys/kernel/livepatch/kpatch_22519882/enabled=1 and transition=0");
    // The transition finishes while apply waits (each binary on its own root).
    for (mut c, name) in node_bins::node_commands().into_iter().zip(node_bins::NAMES) {
        let t = fake_root("5.10.134-18.al8.x86_64", Some(("dnf", "0")));
        write(t.path(), &format!("{LP}/enabled"), "1\n", 0o644);
        write(t.path(), &format!("{LP}/transition"), "1\n", 0o644);
        let p = t.path().join(LP.trim_start_matches('/')).join("transition");
        let flip = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(700));
            std::fs::write(p, "0\n").unwrap();
        });
        let o = c
            .args(["apply", "--recipe", RECIPE, "--root"])
            .arg(t.path())
            .args(["--yes", "--timeout", "10"])
            .output()
            .unwrap();
        flip.join().unwrap();
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert_eq!(o.status.code(), Some(0), "{name}: {out}{err}");
        assert!(
            !out.contains("stand-in dnf"),
            "{name} must not install while applying: {out}"
        );
    }
}

/// A real in-tree module of Debian's kernel is refused on a fake al8
/// root (vermagic names another kernel), and on a root that runs this kernel
/// because it is not the recipe's livepatch module.
#[test]
fn ko_with_foreign_vermagic_or_name_is_refused() {
    // Debian's installed kernel (the machine may run another one).
    let rel = khotfix::verify::qemu::debian_kernel_abi().unwrap();
    let ko = format!("/lib/modules/{rel}/kernel/net/netfilter/ipvs/ip_vs.ko");
    if !Path::new(&ko).exists() {
        panic!("{ko} missing: install linux-image-amd64");
    }
    let t = fake_root("5.10.134-18.al8.x86_64", None);
    let (code, _, err) = run(&["--yes", "--ko", &ko], t.path());
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("built for kernel {rel}")) && err.contains("5.10.134-18.al8.x86_64"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    // Same kernel as the module, recipe for this Debian kernel.
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("deb.toml");
    std::fs::write(&recipe, debian_recipe(&rel, "livepatch_ipvs")).unwrap();
    let t = fake_root(&rel, None);
    let out = node_bins::both()
        .args(["apply", "--recipe"])
        .arg(&recipe)
        .arg("--root")
        .arg(t.path())
        .args(["--yes", "--ko", &ko])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("it is module ip_vs, but the recipe's livepatch module is livepatch_ipvs"),
        "{err}"
    );

    let out = node_bins::both()
        .args(["apply", "--recipe"])
        .arg(&recipe)
        .arg("--root")
        .arg(t.path())
        .args(["--ko", "/etc/hostname"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an ELF file"));
}

/// A recipe whose node conditions cover exactly this Debian kernel.
pub fn debian_recipe(rel: &str, module: &str) -> String {
    let vr = rel.trim_end_matches("-amd64");
    format!(
        "[hotfix]\nid = 3\nname = \"ipvs-estimation-timer\"\nsummary = \"ip_vs estimation_timer\"\ndescription = \"test\"\nversion = \"1.0\"\nbackend = \"kbuild\"\n\n\
         [[target]]\nname = \"debian12\"\ndistro = \"debian12\"\nkernels = [\"{rel}\"]\nmodule_source = \"ipvs-livepatch\"\n\n\
         [node]\nflavors = [\"debian\"]\nmodule = \"{module}\"\nkernels = [\"{vr}\"]\n"
    )
}
