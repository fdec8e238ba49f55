//! kernel-hotfix RPMs checked with the real rpm: layout (`-qpi`, `-qpl`,
//! `--scripts`, `--requires`), signatures (`rpm -K` against a temporary
//! rpmdb, tampering), installation with `rpm -i --root`, the scriptlets'
//! behaviour (with stand-ins for kpatch, uname and systemctl, named as such in
//! tests/data/sign/standins/), reproducibility, and `khotfix package`.

mod support;

use khotfix::distro::Distro;
use khotfix::kernel::KernelRelease;
use khotfix::keys::PackageSigner;
use khotfix::package::{build_rpm, BuildOptions, Compression, PackageInput, PackageOutput};
use khotfix::recipe::{ChangelogEntry, Hotfix};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use support::bin::khotfix;
use support::kernel::{generate_keys, modules, sign_module};
use support::process::{output, run};
use support::tmp::{rand_suffix, tmpdir};

const SDE: u64 = 1754322514; // 2025-08-04 15:48:34 UTC, the seed's release stamp
const KVER: &str = "5.10.134-18.al8.x86_64";
const ID: u64 = 22519882;

fn standins() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sign/standins")
}

/// Development keys from `khotfix keys generate` and a real module built
/// with kbuild and signed by `khotfix sign`.
struct Fixture {
    keys: PathBuf,
    module: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let d = tmpdir();
        let keys = d.join("keys");
        generate_keys(&keys);
        let module = d.join(format!("kpatch-{ID}.ko"));
        sign_module(&keys, &module);
        Fixture { keys, module }
    })
}

fn signer() -> PackageSigner {
    PackageSigner::load(&fixture().keys.join("package-signing.secret.asc"), None).unwrap()
}

fn hotfix() -> Hotfix {
    Hotfix {
        id: ID,
        name: "bpf-lru-leak".into(),
        summary: "Fix a memory leak in the eBPF LRU hash maps".into(),
        description: "Return the LRU element to the free list when htab_lock_bucket() fails.\n"
            .into(),
        version: "1.0".into(),
        changelog: vec![ChangelogEntry {
            date: "2025-08-04".into(),
            author: "khotfix kernel team <kernel-team@example.com>".into(),
            text: "Return the LRU element to the free list.".into(),
        }],
    }
}

fn input(kver: &str, distro: &str) -> PackageInput {
    PackageInput {
        hotfix: hotfix(),
        kernel: KernelRelease::parse(kver).unwrap(),
        distro: Distro::builtin(distro).unwrap(),
        ko_path: fixture().module.clone(),
        patch: "--- a/kernel/bpf/hashtab.c\n+++ b/kernel/bpf/hashtab.c\n".into(),
    }
}

fn build(kver: &str, distro: &str, compression: Compression) -> PackageOutput {
    let out = tmpdir();
    build_rpm(
        &input(kver, distro),
        &signer(),
        &out,
        &BuildOptions {
            compression,
            source_date_epoch: Some(SDE),
        },
    )
    .unwrap()
}

fn rpmq(args: &[&str], pkg: &Path) -> String {
    run(Command::new("rpm").arg("-qp").args(args).arg(pkg))
}

#[test]
fn layout_matches_the_vendor_packages() {
    let p = build(KVER, "alinux3", Compression::Xz);
    assert_eq!(
        p.path.file_name().unwrap().to_str().unwrap(),
        "kernel-hotfix-22519882-5.10.134-18-1.0-20250804154834.al8.x86_64.rpm",
        "the seed's package name"
    );
    let info = rpmq(&["-i"], &p.path);
    let field = |name: &str| {
        info.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.trim_start().strip_prefix(':'))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no {name} in\n{info}"))
    };
    assert_eq!(field("Name"), "kernel-hotfix-22519882-5.10.134-18");
    assert_eq!(field("Version"), "1.0");
    assert_eq!(field("Release"), "20250804154834.al8");
    assert_eq!(field("Architecture"), "x86_64");
    assert!(field("Signature").starts_with("RSA/SHA256"), "{info}");
    let dir = format!("/var/khotfix/{KVER}/{ID}");
    let files = rpmq(&["-l"], &p.path);
    let expected: Vec<String> = vec![
        dir.clone(),
        format!("{dir}/changeinfo"),
        format!("{dir}/description"),
        format!("{dir}/kpatch-{ID}.ko"),
        format!("{dir}/patch"),
    ];
    assert_eq!(files.lines().collect::<Vec<_>>(), expected);
    let req = rpmq(&["--requires"], &p.path);
    assert!(req.lines().any(|l| l == "kpatch >= 0.8"), "{req}");
    // EL-family kernels provide kernel-uname-r: the hotfix needs its kernel.
    assert!(
        req.lines().any(|l| l == format!("kernel-uname-r = {KVER}")),
        "{req}"
    );
    let prov = rpmq(&["--provides"], &p.path);
    assert!(
        prov.lines().any(|l| l == format!("kernel-hotfix = {KVER}")),
        "{prov}"
    );
    assert!(!req.contains("PayloadIsZstd"), "{req}");
    assert_eq!(rpmq(&["--qf", "%{PAYLOADCOMPRESSOR}"], &p.path), "xz");
    let scripts = rpmq(&["--scripts"], &p.path);
    // No %pre: nothing refuses a kernel that is not running (issue 14).
    assert!(!scripts.contains("preinstall scriptlet"), "{scripts}");
    for section in [
        "postinstall scriptlet",
        "preuninstall scriptlet",
        "posttrans scriptlet",
    ] {
        assert!(scripts.contains(section), "no {section} in\n{scripts}");
    }
    assert!(scripts.contains(&format!("KVER={KVER}\n")));
    assert!(scripts.contains(&format!("KO={dir}/kpatch-{ID}.ko\n")));
    // The module shipped is byte for byte the signed one.
    let g = build(KVER, "alinux3", Compression::Gzip);
    assert_eq!(rpmq(&["--qf", "%{PAYLOADCOMPRESSOR}"], &g.path), "gzip");
    // Debian kernels: amd64 maps to x86_64, dist from the distro definition.
    let deb = build("6.1.0-56-amd64", "debian12", Compression::Xz);
    assert_eq!(deb.arch, "x86_64");
    assert_eq!(deb.name, "kernel-hotfix-22519882-6.1.0-56");
    assert!(rpmq(&["-l"], &deb.path)
        .contains("/var/khotfix/6.1.0-56-amd64/22519882/kpatch-22519882.ko"));
    // Debian's kernels are .deb packages rpm cannot see: no kernel requirement.
    let deb_req = rpmq(&["--requires"], &deb.path);
    assert!(!deb_req.contains("kernel-uname-r"), "{deb_req}");
    assert!(rpmq(&["--provides"], &deb.path)
        .lines()
        .any(|l| l == "kernel-hotfix = 6.1.0-56-amd64"));
}

/// `rpm -Kv` with the public key in a temporary rpmdb.
fn rpm_k(pkg: &Path) -> (bool, String) {
    let db = tmpdir();
    run(Command::new("rpm")
        .arg("--dbpath")
        .arg(&db)
        .arg("--import")
        .arg(fixture().keys.join("RPM-GPG-KEY-khotfix")));
    let o = output(
        Command::new("rpm")
            .arg("--dbpath")
            .arg(&db)
            .arg("-Kv")
            .arg(pkg),
    );
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn signatures_verify_and_tampering_is_caught() {
    let p = build(KVER, "alinux3", Compression::Xz);
    let (ok, text) = rpm_k(&p.path);
    assert!(ok, "{text}");
    let line = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .any(|l| l.starts_with(prefix) && l.ends_with(": OK"))
    };
    assert!(
        line("Header V4 RSA/SHA256 Signature"),
        "header-only signature:\n{text}"
    );
    assert!(
        line("V4 RSA/SHA256 Signature"),
        "header+payload signature:\n{text}"
    );
    assert!(line("MD5 digest"), "{text}");
    assert!(line("Payload SHA256 digest"), "{text}");
    assert!(!text.contains("NOKEY"), "{text}");

    // Without the key imported: not OK.
    let db = tmpdir();
    let o = output(
        Command::new("rpm")
            .arg("--dbpath")
            .arg(&db)
            .arg("-K")
            .arg(&p.path),
    );
    assert!(!o.status.success(), "rpm -K must fail without the key");

    let bytes = std::fs::read(&p.path).unwrap();
    // A byte in the payload (the compressed tail of the file).
    let mut payload = bytes.clone();
    let i = payload.len() - 64;
    payload[i] ^= 0x01;
    let t1 = tmpdir().join("payload.rpm");
    std::fs::write(&t1, &payload).unwrap();
    let (ok, text) = rpm_k(&t1);
    assert!(!ok, "payload tampering not detected:\n{text}");
    // A byte in the header: the summary text.
    let needle = b"Fix a memory leak in the eBPF";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("summary in header");
    let mut header = bytes.clone();
    header[at] = b'X';
    let t2 = tmpdir().join("header.rpm");
    std::fs::write(&t2, &header).unwrap();
    let (ok, text) = rpm_k(&t2);
    assert!(!ok, "header tampering not detected:\n{text}");
}

#[test]
fn reproducible_with_source_date_epoch() {
    let a = build(KVER, "alinux3", Compression::Xz);
    let b = build(KVER, "alinux3", Compression::Xz);
    assert_ne!(a.path, b.path);
    assert_eq!(
        std::fs::read(&a.path).unwrap(),
        std::fs::read(&b.path).unwrap(),
        "same inputs, same bytes"
    );
    let out = tmpdir();
    let c = build_rpm(
        &input(KVER, "alinux3"),
        &signer(),
        &out,
        &BuildOptions {
            compression: Compression::Xz,
            source_date_epoch: Some(SDE + 3600),
        },
    )
    .unwrap();
    assert_eq!(c.release, "20250804164834.al8");
    assert_ne!(c.sha256, a.sha256);
}

/// A minimal root for `rpm --root`: busybox as /bin/sh and the tools the
/// scriptlets call, plus the kpatch stand-in at /usr/bin/kpatch.
fn busybox_root(with_kpatch: bool) -> PathBuf {
    let root = tmpdir().join("root");
    for d in [
        "bin", "usr/bin", "usr/sbin", "sbin", "etc", "var/log", "var/lib", "tmp",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "uname", "grep", "tr", "basename", "mkdir", "touch", "rm", "cat", "echo", "printf",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    if with_kpatch {
        std::fs::copy(standins().join("kpatch"), root.join("usr/bin/kpatch")).unwrap();
    }
    std::fs::write(root.join("etc/kpatch-standin-check-files"), "").unwrap();
    root
}

#[test]
fn rpm_installs_into_another_root_and_scriptlets_run_there() {
    let p = build(KVER, "alinux3", Compression::Xz);
    let root = busybox_root(true);
    let o = output(
        Command::new("rpm")
            .arg("--root")
            .arg(&root)
            .args(["-i", "--nodeps", "--force-debian"])
            .arg(&p.path),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("installed into another root; kpatch.service loads kpatch_22519882"),
        "{text}"
    );
    let dir = root.join(format!("var/khotfix/{KVER}/{ID}"));
    assert_eq!(
        std::fs::read(dir.join(format!("kpatch-{ID}.ko"))).unwrap(),
        std::fs::read(&fixture().module).unwrap()
    );
    assert!(std::fs::read_to_string(dir.join("description"))
        .unwrap()
        .contains("htab_lock_bucket"));
    assert!(std::fs::read_to_string(dir.join("changeinfo"))
        .unwrap()
        .contains("hotfix: 22519882"));
    assert!(std::fs::read_to_string(dir.join("patch"))
        .unwrap()
        .contains("hashtab.c"));
    let log = std::fs::read_to_string(root.join("var/log/kpatch-standin.log")).unwrap();
    assert_eq!(
        log,
        format!("kpatch install -k {KVER} /var/khotfix/{KVER}/{ID}/kpatch-{ID}.ko\n"),
        "no load into the build host's kernel"
    );

    let o = output(Command::new("rpm").arg("--root").arg(&root).args([
        "-e",
        "--nodeps",
        "--force-debian",
        "kernel-hotfix-22519882-5.10.134-18",
    ]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let log = std::fs::read_to_string(root.join("var/log/kpatch-standin.log")).unwrap();
    assert!(
        log.ends_with(&format!("kpatch uninstall -k {KVER} kpatch-{ID}.ko\n")),
        "{log}"
    );
    assert!(!log.contains("unload"), "{log}");
    assert!(!dir.join(format!("kpatch-{ID}.ko")).exists());
}

/// One scriptlet's text straight out of the package.
fn scriptlet(pkg: &Path, tag: &str) -> String {
    rpmq(&["--qf", &format!("%{{{tag}}}")], pkg)
}

struct Live {
    dir: PathBuf,
    bin: PathBuf,
    log: PathBuf,
    state: PathBuf,
}

/// Stand-ins on PATH for a "live host" run.
fn live(with_kpatch: bool) -> Live {
    let dir = tmpdir();
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let mut tools = vec!["uname", "systemctl"];
    if with_kpatch {
        tools.push("kpatch");
    }
    for t in tools {
        std::fs::copy(standins().join(t), bin.join(t)).unwrap();
    }
    Live {
        log: dir.join("calls.log"),
        state: dir.join("state"),
        bin,
        dir,
    }
}

/// Run a scriptlet with /bin/sh as rpm does, as the live host: in a new PID
/// namespace (`unshare -pf --mount-proc`) so that PID 1's root is `/`, as on
/// a real host (this sandbox's PID 1 has another root).
fn run_script(l: &Live, text: &str, running: &str, arg: &str) -> (i32, String) {
    let script = l.dir.join(format!("s-{}.sh", rand_suffix()));
    std::fs::write(&script, text).unwrap();
    assert!(
        Command::new("sh")
            .args(["-c", "command -v kpatch"])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true),
        "a real kpatch is on PATH"
    );
    let o = output(
        Command::new("unshare")
            .args(["-pf", "--mount-proc", "/bin/sh"])
            .arg(&script)
            .arg(arg)
            .env("PATH", format!("{}:/usr/bin:/bin", l.bin.display()))
            .env("UNAME_STANDIN_R", running)
            .env("KPATCH_STANDIN_LOG", &l.log)
            .env("KPATCH_STANDIN_STATE", &l.state),
    );
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn calls(l: &Live) -> Vec<String> {
    std::fs::read_to_string(&l.log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn scriptlets_on_the_target_kernel_install_load_unload_uninstall() {
    let p = build(KVER, "alinux3", Compression::Xz);
    let ko = format!("/var/khotfix/{KVER}/{ID}/kpatch-{ID}.ko");
    let l = live(true);
    let (rc, out) = run_script(&l, &scriptlet(&p.path, "POSTIN"), KVER, "1");
    assert_eq!(rc, 0, "{out}");
    let (rc, out) = run_script(&l, &scriptlet(&p.path, "POSTTRANS"), KVER, "1");
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains(&format!("loading patch module: {ko}")),
        "{out}"
    );
    assert_eq!(
        calls(&l),
        vec![
            "systemctl enable kpatch.service".to_string(),
            format!("kpatch install -k {KVER} {ko}"),
            format!("kpatch load {ko}")
        ],
        "the seed's order: enable, install, load"
    );
    // Upgrade ($1 = 1): the old package's %preun leaves the patch alone.
    let (rc, _) = run_script(&l, &scriptlet(&p.path, "PREUN"), KVER, "1");
    assert_eq!(rc, 0);
    assert_eq!(calls(&l).len(), 3);
    // Erase ($1 = 0): unload, then uninstall.
    let (rc, out) = run_script(&l, &scriptlet(&p.path, "PREUN"), KVER, "0");
    assert_eq!(rc, 0, "{out}");
    assert_eq!(
        calls(&l)[3..],
        [
            format!("kpatch unload kpatch_{ID}"),
            format!("kpatch uninstall -k {KVER} kpatch-{ID}.ko")
        ]
    );
    // Erase again with the module not loaded: a clear message, still success.
    let (rc, out) = run_script(&l, &scriptlet(&p.path, "PREUN"), KVER, "0");
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("kpatch_22519882 was not unloaded (not loaded, or in use); continuing"),
        "{out}"
    );
    assert_eq!(
        calls(&l).last().unwrap(),
        &format!("kpatch uninstall -k {KVER} kpatch-{ID}.ko")
    );
}

#[test]
fn scriptlets_on_another_running_kernel_install_for_boot_only() {
    // A host stages a hotfix for the kernel it is about to boot: %post
    // installs it into kpatch (loaded by kpatch.service when that kernel
    // boots), %posttrans does not load it, %preun does not unload it.
    let p = build(KVER, "alinux3", Compression::Xz);
    let ko = format!("/var/khotfix/{KVER}/{ID}/kpatch-{ID}.ko");
    let l = live(true);
    let other = "5.10.134-19.1.al8.x86_64";
    let (rc, out) = run_script(&l, &scriptlet(&p.path, "POSTIN"), other, "1");
    assert_eq!(rc, 0, "{out}");
    let (rc, out) = run_script(&l, &scriptlet(&p.path, "POSTTRANS"), other, "1");
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("will be loaded when 5.10.134-18.al8.x86_64 boots"),
        "{out}"
    );
    let (rc, _) = run_script(&l, &scriptlet(&p.path, "PREUN"), other, "0");
    assert_eq!(rc, 0);
    assert_eq!(
        calls(&l),
        vec![
            "systemctl enable kpatch.service".to_string(),
            format!("kpatch install -k {KVER} {ko}"),
            format!("kpatch uninstall -k {KVER} kpatch-{ID}.ko"),
        ],
        "no load or unload on another kernel"
    );
}

#[test]
fn upgrade_replaces_the_module_installed_in_kpatch() {
    // Real kpatch refuses `install` over an installed module of the same
    // name; on upgrade ($1 = 2) %post uninstalls the old copy first.
    let p = build(KVER, "alinux3", Compression::Xz);
    let ko = format!("/var/khotfix/{KVER}/{ID}/kpatch-{ID}.ko");
    let l = live(true);
    let (rc, out) = run_script(&l, &scriptlet(&p.path, "POSTIN"), KVER, "2");
    assert_eq!(rc, 0, "{out}");
    assert_eq!(
        calls(&l)[1..],
        [
            format!("kpatch uninstall -k {KVER} kpatch-{ID}.ko"),
            format!("kpatch install -k {KVER} {ko}"),
        ]
    );
}

#[test]
fn scriptlets_survive_a_missing_kpatch() {
    let p = build(KVER, "alinux3", Compression::Xz);
    let l = live(false);
    for (tag, arg, msg) in [
        ("POSTIN", "1", "kpatch is not installed; /var/khotfix/5.10.134-18.al8.x86_64/22519882/kpatch-22519882.ko is not installed for boot"),
        ("POSTTRANS", "1", "kpatch is not installed; kpatch_22519882 is NOT loaded"),
        ("PREUN", "0", "kpatch is not installed; nothing to unload or uninstall"),
    ] {
        let (rc, out) = run_script(&l, &scriptlet(&p.path, tag), KVER, arg);
        assert_eq!(rc, 0, "{tag}: {out}");
        assert!(out.contains(msg), "{tag}: {out}");
    }
    assert_eq!(
        calls(&l),
        vec!["systemctl enable kpatch.service".to_string()]
    );
}

#[test]
fn khotfix_package_cli_packages_the_build_output() {
    let f = fixture();
    let d = tmpdir();
    let build_dir = d.join("build");
    for k in [KVER, "5.10.134-19.1.al8.x86_64"] {
        let j = build_dir.join(format!("{ID}-alinux3-{k}"));
        std::fs::create_dir_all(&j).unwrap();
        std::fs::copy(&f.module, j.join(format!("kpatch-{ID}.ko"))).unwrap();
    }
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sign/recipes/hotfix.toml");
    let cmd = |rpms: &Path, extra: &[&str]| {
        let mut c = khotfix();
        c.arg("package")
            .arg(&recipe)
            .arg("--build-dir")
            .arg(&build_dir)
            .arg("--out-dir")
            .arg(rpms)
            .arg("--pgp-key")
            .arg(f.keys.join("package-signing.secret.asc"))
            .args(extra)
            .env("SOURCE_DATE_EPOCH", SDE.to_string());
        c
    };
    let out = run(&mut cmd(&d.join("rpms"), &["--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["nevra"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "kernel-hotfix-22519882-5.10.134-18-1.0-20250804154834.al8.x86_64",
            "kernel-hotfix-22519882-5.10.134-19.1-1.0-20250804154834.al8.x86_64"
        ]
    );
    for p in v.as_array().unwrap() {
        assert!(Path::new(p["path"].as_str().unwrap()).is_file());
    }
    let patch = run(Command::new("rpm2cpio").arg(v[0]["path"].as_str().unwrap()));
    assert!(
        patch.contains("give the element back"),
        "the recipe's patch is shipped"
    );
    // --kernel narrows to one.
    let out = run(&mut cmd(
        &d.join("rpms"),
        &["--json", "--kernel", "5.10.134-19.1.al8.x86_64"],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    // An unsigned module is refused with the file named; nothing written.
    let j = build_dir.join(format!("{ID}-alinux3-{KVER}"));
    std::fs::copy(&modules()[0], j.join(format!("kpatch-{ID}.ko"))).unwrap();
    let rpms = d.join("rpms2");
    let o = output(&mut cmd(&rpms, &[]));
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("is not signed") && err.contains(&format!("kpatch-{ID}.ko")),
        "{err}"
    );
    assert!(!rpms.exists() || std::fs::read_dir(&rpms).unwrap().next().is_none());
    // With --module-key/--module-cert the modules are signed first (in place):
    // the result is the same bytes `khotfix sign` gave the fixture.
    let mut c = cmd(&rpms, &["--json", "--kernel", KVER]);
    c.arg("--module-key")
        .arg(f.keys.join("module-signing.key.pem"));
    c.arg("--module-cert")
        .arg(f.keys.join("module-signing.crt.pem"));
    let v: serde_json::Value = serde_json::from_str(&run(&mut c)).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(
        std::fs::read(j.join(format!("kpatch-{ID}.ko"))).unwrap(),
        std::fs::read(&f.module).unwrap()
    );
}
