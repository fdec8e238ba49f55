//! Safe unpacking of source and binary RPMs with the real rpmbuild: a normal
//! source RPM unpacks with the right contents and goes through the real
//! `rpmbuild -bp` with the argv we build; hostile packages (absolute paths,
//! `..`, symlinks that escape, directly or through another symlink) are
//! refused, naming the package and the entry, and nothing is written
//! anywhere (no destination, no leftovers, nothing outside).
//!
//! The kernel source RPM and kernel-debuginfo packages here are small
//! stand-ins built at test time (vendor mirrors are unreachable from CI);
//! they have the real layout: kernel.spec + tarball + config as sources,
//! `%prep` with `%setup -c -n kernel-<ver>`, vmlinux under
//! /usr/lib/debug/lib/modules/<kver>/.

mod support;

use khotfix::distro::Distro;
use khotfix::kernel::KernelRelease;
use khotfix::prepare::apply;
use khotfix::prepare::srpm::{self, EntryKind, RpmbuildPrep, UnpackError};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::process::run;

fn distro(name: &str) -> Distro {
    Distro::builtin(name).unwrap()
}

/// Every path under `dir` (files, dirs, links), for "nothing was written" checks.
fn snapshot(dir: &Path) -> BTreeSet<PathBuf> {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .map(|e| e.unwrap().path().to_path_buf())
        .collect()
}

const EST_C: &str =
    "static void estimation_timer(struct timer_list *t)\n{\n\twalk_estimators(t);\n}\n";
const CONFIG: &str = "CONFIG_LIVEPATCH=y\nCONFIG_IP_VS=m\n";
const SPEC_PATCH: &str = "--- a/Makefile\n+++ b/Makefile\n@@ -1,2 +1,3 @@\n VERSION = 3\n EXTRAVERSION =\n+# patched in %prep\n";

/// Build a kernel-like source RPM with rpmbuild -bs. Returns (srpm, sources dir).
fn build_srpm(work: &Path, extra_sources: &[(&str, &str)]) -> (PathBuf, PathBuf) {
    let top = work.join("rpmbuild");
    let src = top.join("SOURCES");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(top.join("SPECS")).unwrap();
    // The kernel tarball: linux-3.10.0/{Makefile, net/netfilter/ipvs/ip_vs_est.c}
    let stage = work.join("stage/linux-3.10.0");
    std::fs::create_dir_all(stage.join("net/netfilter/ipvs")).unwrap();
    std::fs::write(stage.join("Makefile"), "VERSION = 3\nEXTRAVERSION =\n").unwrap();
    std::fs::write(stage.join("net/netfilter/ipvs/ip_vs_est.c"), EST_C).unwrap();
    run(Command::new("tar")
        .arg("-C")
        .arg(work.join("stage"))
        .arg("-cJf")
        .arg(src.join("linux-3.10.0.tar.xz"))
        .arg("linux-3.10.0"));
    std::fs::write(src.join("kernel-3.10.0-x86_64.config"), CONFIG).unwrap();
    std::fs::write(src.join("linux-kernel-test.patch"), SPEC_PATCH).unwrap();
    let mut extra_lines = String::new();
    for (i, (name, body)) in extra_sources.iter().enumerate() {
        std::fs::write(src.join(name), body).unwrap();
        extra_lines.push_str(&format!("Source{}: {name}\n", 10 + i));
    }
    let spec = format!(
        "Name: kernel\nVersion: 3.10.0\nRelease: 1062.el7\nSummary: stand-in kernel source\nLicense: GPLv2\n\
         Source0: linux-3.10.0.tar.xz\nSource1: kernel-3.10.0-x86_64.config\nPatch0: linux-kernel-test.patch\n{extra_lines}\
         \n%description\nstand-in\n\n%prep\n%setup -q -c -n kernel-%{{version}}\ncd linux-%{{version}}\npatch -p1 < %{{PATCH0}}\n\
         mkdir configs\ncp %{{SOURCE1}} configs/\n\n%build\n\n%files\n"
    );
    std::fs::write(top.join("SPECS/kernel.spec"), spec).unwrap();
    run(Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .args(["--define", "_source_payload w6.xzdio", "-bs"])
        .arg(top.join("SPECS/kernel.spec")));
    let srpm = top.join("SRPMS/kernel-3.10.0-1062.el7.src.rpm");
    assert!(srpm.is_file());
    (srpm, src)
}

#[test]
fn normal_srpm_unpacks_and_prepares_with_rpmbuild_bp() {
    let d = tempfile::tempdir().unwrap();
    let (srpm, sources) = build_srpm(d.path(), &[]);
    let dest = d.path().join("unpacked");
    let u = srpm::unpack_rpm(&srpm, &dest).unwrap();
    assert!(u.source);
    let names: BTreeSet<&str> = u.files().collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "kernel.spec",
            "linux-3.10.0.tar.xz",
            "kernel-3.10.0-x86_64.config",
            "linux-kernel-test.patch"
        ])
    );
    for n in [
        "linux-3.10.0.tar.xz",
        "kernel-3.10.0-x86_64.config",
        "linux-kernel-test.patch",
    ] {
        assert_eq!(
            std::fs::read(dest.join(n)).unwrap(),
            std::fs::read(sources.join(n)).unwrap(),
            "{n} differs"
        );
        let size = std::fs::metadata(dest.join(n)).unwrap().len();
        assert!(u
            .entries
            .iter()
            .any(|e| e.path == n && e.kind == EntryKind::File { size }));
    }

    // Config from the SRPM's sources, via the distro table.
    let k = KernelRelease::parse("3.10.0-1062.el7.x86_64").unwrap();
    let cfg = srpm::find_config(&distro("centos7"), &k, "x86_64", &dest, None).unwrap();
    assert_eq!(cfg, dest.join("kernel-3.10.0-x86_64.config"));

    // rpmbuild -bp with exactly the argv the builder container will run.
    let top = d.path().join("top");
    let t = srpm::layout_topdir(&srpm, &top).unwrap();
    assert_eq!(t.spec, "kernel.spec");
    assert!(
        top.join("SPECS/kernel.spec").is_file()
            && top.join("SOURCES/linux-3.10.0.tar.xz").is_file()
    );
    let prep = RpmbuildPrep::new(&top, &t.spec, "x86_64").unwrap();
    let argv = prep.argv();
    assert_eq!(
        argv[..6],
        [
            "rpmbuild",
            "--define",
            &format!("_topdir {}", top.display()),
            "-bp",
            "--nodeps",
            "--target=x86_64"
        ]
    );
    run(Command::new(&argv[0]).args(&argv[1..]));
    let tree = RpmbuildPrep::find_tree(&top).unwrap();
    assert_eq!(tree, top.join("BUILD/kernel-3.10.0/linux-3.10.0"));
    let mk = std::fs::read_to_string(tree.join("Makefile")).unwrap();
    assert!(
        mk.contains("# patched in %prep"),
        "the spec's own patch ran: {mk}"
    );
    // The tree's configs/ is the second place the table looks.
    let cfg = srpm::find_config(
        &distro("centos7"),
        &k,
        "x86_64",
        Path::new("/nonexistent"),
        Some(&tree),
    )
    .unwrap();
    assert_eq!(std::fs::read_to_string(cfg).unwrap(), CONFIG);

    // The recipe's patch on the prepared tree, and the kernel's EXTRAVERSION.
    let fix = d.path().join("fix.patch");
    std::fs::write(&fix, "--- a/net/netfilter/ipvs/ip_vs_est.c\n+++ b/net/netfilter/ipvs/ip_vs_est.c\n@@ -1,4 +1,4 @@\n static void estimation_timer(struct timer_list *t)\n {\n-\twalk_estimators(t);\n+\treturn;\n }\n").unwrap();
    apply::apply(&tree, &[fix]).unwrap();
    assert!(
        std::fs::read_to_string(tree.join("net/netfilter/ipvs/ip_vs_est.c"))
            .unwrap()
            .contains("\treturn;")
    );
    srpm::set_extraversion(&tree, &k).unwrap();
    assert!(std::fs::read_to_string(tree.join("Makefile"))
        .unwrap()
        .contains("EXTRAVERSION = -1062.el7.x86_64\n"));
}

#[test]
fn rpmbuild_bp_failure_is_visible() {
    // A top directory without the tarball: the real rpmbuild -bp fails, and
    // find_tree says there is no tree rather than picking something.
    let d = tempfile::tempdir().unwrap();
    let (srpm, _) = build_srpm(d.path(), &[]);
    let top = d.path().join("top");
    srpm::layout_topdir(&srpm, &top).unwrap();
    std::fs::remove_file(top.join("SOURCES/linux-3.10.0.tar.xz")).unwrap();
    let argv = RpmbuildPrep::new(&top, "kernel.spec", "x86_64")
        .unwrap()
        .argv();
    let st = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
    assert!(!st.status.success());
    let e = RpmbuildPrep::find_tree(&top).unwrap_err().to_string();
    assert!(e.contains("no kernel-*/linux-* tree"), "{e}");
}

/// Replace same-length strings in a built package: header strings are
/// NUL-terminated in the header's data store, the payload is compressed, so
/// this renames one file in the header only (the rpm crate does not check
/// the header digest when reading).
fn rename_in_header(rpm: &Path, from: &str, to: &str) {
    assert_eq!(from.len(), to.len());
    let mut b = std::fs::read(rpm).unwrap();
    let needle = format!("{from}\0");
    let mut n = 0;
    let mut i = 0;
    while let Some(pos) = b[i..]
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
    {
        b[i + pos..i + pos + from.len()].copy_from_slice(to.as_bytes());
        i += pos + from.len();
        n += 1;
    }
    assert!(n > 0, "{from} not found in {}", rpm.display());
    std::fs::write(rpm, b).unwrap();
}

fn assert_refused(e: UnpackError, rpm: &Path, entry: &str, reason: &str) {
    match &e {
        UnpackError::Unsafe {
            rpm: r,
            entry: en,
            reason: why,
        } => {
            assert_eq!(r, rpm);
            assert_eq!(en, entry);
            assert!(why.contains(reason), "{why}");
        }
        other => panic!("expected a refusal, got: {other}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(&rpm.display().to_string()) && msg.contains(entry) && !msg.contains('\n'),
        "{msg}"
    );
}

#[test]
fn hostile_srpm_paths_are_refused_and_nothing_is_written() {
    let d = tempfile::tempdir().unwrap();
    let (good, _) = build_srpm(
        d.path(),
        &[("aaaaaa.txt", "dotdot\n"), ("bbbbbb.txt", "absolute\n")],
    );
    for (from, to, reason) in [
        ("aaaaaa.txt", "../pwn.txt", "'..'"),
        ("bbbbbb.txt", "/tmp/p.txt", "absolute"),
    ] {
        let bad = d.path().join(format!("hostile-{}.src.rpm", &from[..1]));
        std::fs::copy(&good, &bad).unwrap();
        rename_in_header(&bad, from, to);
        let work = d.path().join(format!("work-{}", &from[..1]));
        let dest = work.join("a/b/unpacked");
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let before = snapshot(d.path());
        let e = srpm::unpack_rpm(&bad, &dest).unwrap_err();
        assert_refused(e, &bad, to, reason);
        assert_eq!(snapshot(d.path()), before, "something was written");
        assert!(!Path::new("/tmp/p.txt").exists());
    }
}

fn builder() -> rpm::PackageBuilder {
    pkg_builder("hostile", "noarch", rpm::CompressionType::Gzip)
}

fn pkg_builder(name: &str, arch: &str, c: rpm::CompressionType) -> rpm::PackageBuilder {
    let mut b = rpm::PackageBuilder::new(name, "1.0", "MIT", arch, "test package");
    b.using_config(rpm::BuildConfig::v4().compression(c));
    b
}

#[test]
fn hostile_binary_rpms_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, rpm::Package, &str, &str)> = vec![
        (
            "dotdot",
            builder()
                .with_file_contents("ok\n", rpm::FileOptions::new("/usr/share/ok.txt"))
                .unwrap()
                .with_file_contents("escaped\n", rpm::FileOptions::new("/../../escape.txt"))
                .unwrap()
                .build()
                .unwrap(),
            "/../../escape.txt",
            "'..'",
        ),
        (
            "link-out",
            builder()
                .with_symlink(rpm::FileOptions::symlink(
                    "/usr/lib/evil",
                    "../../../../../etc",
                ))
                .unwrap()
                .build()
                .unwrap(),
            "/usr/lib/evil",
            "leaves the tree",
        ),
        (
            "link-chain",
            builder()
                .with_symlink(rpm::FileOptions::symlink("/usr/up", ".."))
                .unwrap()
                .with_symlink(rpm::FileOptions::symlink("/usr/x", "up/.."))
                .unwrap()
                .build()
                .unwrap(),
            "/usr/x",
            "leaves the tree",
        ),
        (
            "through-link",
            builder()
                .with_symlink(rpm::FileOptions::symlink("/usr/lnk", "/usr/real"))
                .unwrap()
                .with_file_contents("x\n", rpm::FileOptions::new("/usr/lnk/file"))
                .unwrap()
                .build()
                .unwrap(),
            "usr/lnk/file",
            "under the symlink",
        ),
    ];
    for (name, pkg, entry, reason) in cases {
        let rpm_path = d.path().join(format!("{name}.rpm"));
        pkg.write_file(&rpm_path).unwrap();
        let dest = d.path().join(format!("w/{name}/x/y/dest"));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let before = snapshot(d.path());
        let e = srpm::unpack_rpm(&rpm_path, &dest).unwrap_err();
        assert_refused(e, &rpm_path, entry, reason);
        assert_eq!(snapshot(d.path()), before, "{name}: something was written");
    }
}

#[test]
fn rpmbuild_symlink_pointing_outside_is_refused() {
    // A real rpmbuild binary package whose %files has a symlink out of the tree.
    let d = tempfile::tempdir().unwrap();
    let top = d.path().join("rpmbuild");
    std::fs::create_dir_all(top.join("SPECS")).unwrap();
    let spec = "Name: evil\nVersion: 1\nRelease: 1\nSummary: s\nLicense: MIT\nBuildArch: noarch\n\n%description\nd\n\n%install\n\
                mkdir -p %{buildroot}/usr/share/evil\necho hi > %{buildroot}/usr/share/evil/readme\n\
                ln -s ../../../../../../../../../../etc/shadow %{buildroot}/usr/share/evil/shadow\n\n%files\n/usr/share/evil\n";
    std::fs::write(top.join("SPECS/evil.spec"), spec).unwrap();
    run(Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .args([
            "--define",
            "_binary_payload w6.xzdio",
            "--define",
            "__brp_mangle_shebangs %{nil}",
            "-bb",
        ])
        .arg(top.join("SPECS/evil.spec")));
    let rpm_path = top.join("RPMS/noarch/evil-1-1.noarch.rpm");
    let dest = d.path().join("w/dest");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let before = snapshot(d.path());
    let e = srpm::unpack_rpm(&rpm_path, &dest).unwrap_err();
    assert_refused(e, &rpm_path, "/usr/share/evil/shadow", "leaves the tree");
    assert_eq!(snapshot(d.path()), before);
}

#[test]
fn binary_rpm_absolute_links_are_rerooted() {
    let d = tempfile::tempdir().unwrap();
    let pkg = builder()
        .with_file_contents(
            "#!/bin/sh\n",
            rpm::FileOptions::new("/usr/src/kernels/k/Makefile").permissions(0o644),
        )
        .unwrap()
        .with_symlink(rpm::FileOptions::symlink(
            "/lib/modules/k/build",
            "/usr/src/kernels/k",
        ))
        .unwrap()
        .build()
        .unwrap();
    let p = d.path().join("devel.rpm");
    pkg.write_file(&p).unwrap();
    let dest = d.path().join("root");
    let u = srpm::unpack_rpm(&p, &dest).unwrap();
    assert!(!u.source);
    let link = dest.join("lib/modules/k/build");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        PathBuf::from("../../../usr/src/kernels/k")
    );
    assert_eq!(
        std::fs::read_to_string(link.join("Makefile")).unwrap(),
        "#!/bin/sh\n"
    );
}

#[test]
fn existing_destination_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (srpm, _) = build_srpm(d.path(), &[]);
    let dest = d.path().join("exists");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("keep"), "x").unwrap();
    let e = srpm::unpack_rpm(&srpm, &dest).unwrap_err().to_string();
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(std::fs::read_to_string(dest.join("keep")).unwrap(), "x");
}

#[test]
fn not_an_rpm_is_named() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("junk.src.rpm");
    std::fs::write(&p, b"not an rpm at all").unwrap();
    let e = srpm::unpack_rpm(&p, &d.path().join("x"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("{}: not a readable RPM", p.display())),
        "{e}"
    );
    assert!(!d.path().join("x").exists());
}

#[test]
fn vmlinux_from_debuginfo() {
    // Stand-in kernel-debuginfo with the real layout.
    let d = tempfile::tempdir().unwrap();
    let k = KernelRelease::parse("3.10.0-1062.9.1.el7.x86_64").unwrap();
    let elf = std::fs::read("/bin/true").unwrap();
    let pkg = pkg_builder("kernel-debuginfo", "x86_64", rpm::CompressionType::Xz)
        .with_file_contents(
            elf.clone(),
            rpm::FileOptions::new(format!("/usr/lib/debug/lib/modules/{k}/vmlinux")),
        )
        .unwrap()
        .with_file_contents(
            "other\n",
            rpm::FileOptions::new(format!(
                "/usr/lib/debug/lib/modules/{k}/kernel/net/ipv4/tcp.ko.debug"
            )),
        )
        .unwrap()
        .build()
        .unwrap();
    let p = d.path().join("kernel-debuginfo.rpm");
    pkg.write_file(&p).unwrap();
    let out = d.path().join("out/vmlinux");
    let n = srpm::extract_vmlinux(&p, &k, &out).unwrap();
    assert_eq!(n, elf.len() as u64);
    assert_eq!(std::fs::read(&out).unwrap(), elf);
    // Another kernel's vmlinux is not there; the error shows what is.
    let other = KernelRelease::parse("3.10.0-1062.el7.x86_64").unwrap();
    let e = srpm::extract_vmlinux(&p, &other, &d.path().join("out/v2"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no /usr/lib/debug/lib/modules/3.10.0-1062.el7.x86_64/vmlinux")
            && e.contains(&format!("it has: /usr/lib/debug/lib/modules/{k}/vmlinux")),
        "{e}"
    );
    assert!(!d.path().join("out/v2").exists());
    // vmlinux as a symlink is refused.
    let pkg = pkg_builder("kernel-debuginfo", "x86_64", rpm::CompressionType::Gzip)
        .with_symlink(rpm::FileOptions::symlink(
            format!("/usr/lib/debug/lib/modules/{k}/vmlinux"),
            "/etc/shadow",
        ))
        .unwrap()
        .build()
        .unwrap();
    let p2 = d.path().join("link.rpm");
    pkg.write_file(&p2).unwrap();
    let e = srpm::extract_vmlinux(&p2, &k, &d.path().join("out/v3")).unwrap_err();
    assert!(matches!(e, UnpackError::Unsafe { .. }), "{e}");
    assert!(!d.path().join("out/v3").exists());
}

#[test]
fn debian_config_from_installed_headers() {
    // The real linux-headers package on this machine; ABI discovered now.
    let deps = run(Command::new("apt-cache").args(["depends", "linux-headers-amd64"]));
    let abi = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-headers-") && p.ends_with("-amd64") && !p.contains("common"))
        .expect("linux-headers-amd64 depends on linux-headers-<abi>-amd64")
        .trim_start_matches("linux-headers-")
        .to_string();
    let k = KernelRelease::parse(&abi).unwrap();
    let cfg = srpm::find_config(&distro("debian12"), &k, "amd64", Path::new("/"), None).unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("CONFIG_LIVEPATCH=y"), "{}", cfg.display());
    // A Debian ABI that is not installed: the error lists where it looked.
    let k2 = KernelRelease::parse("6.1.0-9999-amd64").unwrap();
    let e = srpm::find_config(&distro("debian12"), &k2, "amd64", Path::new("/"), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/usr/src/linux-headers-6.1.0-9999-amd64/.config"),
        "{e}"
    );
}

#[test]
fn stage_and_finish_a_prepared_tree() {
    // The two host-side halves around the container's rpmbuild -bp (run on
    // the host here, with the container path equal to the host path).
    let d = tempfile::tempdir().unwrap();
    let (srpm, _) = build_srpm(d.path(), &[]);
    let work = d.path().join("job");
    std::fs::create_dir_all(&work).unwrap();
    let spec =
        khotfix::prepare::stage_rpm_source(&srpm, &work, Path::new("/work/job"), "x86_64").unwrap();
    assert_eq!(spec.rpmbuild.argv()[2], "_topdir /work/job/topdir");
    assert_eq!(
        spec.rpmbuild.argv()[6],
        "/work/job/topdir/SPECS/kernel.spec"
    );
    let host = RpmbuildPrep::new(&spec.topdir_host, &spec.rpmbuild.spec, "x86_64")
        .unwrap()
        .argv();
    run(Command::new(&host[0]).args(&host[1..]));

    let k = KernelRelease::parse("3.10.0-1062.9.1.el7.x86_64").unwrap();
    let good = d.path().join("good.patch");
    std::fs::write(&good, "--- a/net/netfilter/ipvs/ip_vs_est.c\n+++ b/net/netfilter/ipvs/ip_vs_est.c\n@@ -2,3 +2,3 @@ static void estimation_timer(struct timer_list *t)\n {\n-\twalk_estimators(t);\n+\treturn;\n }\n").unwrap();
    let p = khotfix::prepare::finish_rpm_tree(
        &spec,
        &distro("centos7"),
        &k,
        std::slice::from_ref(&good),
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(p.tree.join(".config")).unwrap(),
        CONFIG
    );
    assert!(std::fs::read_to_string(p.tree.join("Makefile"))
        .unwrap()
        .contains("EXTRAVERSION = -1062.9.1.el7.x86_64"));
    assert!(!p.patch_check.applied);
    assert_eq!(
        std::fs::read_to_string(p.tree.join("net/netfilter/ipvs/ip_vs_est.c")).unwrap(),
        EST_C,
        "checked, not applied"
    );

    // A patch that does not apply fails here, naming patch, file and hunk.
    let bad = d.path().join("bad.patch");
    std::fs::write(&bad, "--- a/net/netfilter/ipvs/ip_vs_est.c\n+++ b/net/netfilter/ipvs/ip_vs_est.c\n@@ -2,3 +2,3 @@\n {\n-\twalk_estimators_v2(t);\n+\twalk_estimators_v3(t);\n }\n").unwrap();
    let e = khotfix::prepare::finish_rpm_tree(&spec, &distro("centos7"), &k, &[good, bad.clone()])
        .unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.starts_with(&format!(
            "{}:3: hunk #1 of net/netfilter/ipvs/ip_vs_est.c does not apply",
            bad.display()
        )),
        "{msg}"
    );
}
