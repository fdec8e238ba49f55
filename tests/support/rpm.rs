//! Building small real packages with rpmbuild from a spec text, for the
//! stand-ins (kernel packages, the kpatch runtime, /bin/sh) and the
//! packages the repository tests publish.

use super::process::ok;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The distro's /bin/sh package, stood in for by busybox-static: `/bin/sh`
/// plus the applets the kpatch runtime stand-in uses. An empty installroot
/// has no shell, and rpm scriptlets (and the `Requires: /bin/sh` rpm adds
/// for them) need one.
pub const BUSYBOX_SH_SPEC: &str = r#"
%global debug_package %{nil}
%global __os_install_post %{nil}
Name: busybox-sh
Version: 1.0
Release: 1
Summary: STAND-IN /bin/sh (busybox-static) for the test installroots
License: GPL-2.0
AutoReqProv: no
Provides: /bin/sh
%description
Stand-in for the distro's shell package.
%install
mkdir -p %{buildroot}/bin
cp /bin/busybox %{buildroot}/bin/busybox
for a in sh basename mkdir cp rm rmdir; do ln -s busybox %{buildroot}/bin/$a; done
%files
/bin/*
"#;

/// `rpmbuild -bb` of `spec` (written to `work/NAME.spec`), topdir
/// `work/rpmbuild`, packages under `work/rpms/NAME/`; the built package.
pub fn rpmbuild(spec: &str, work: &Path, name: &str) -> PathBuf {
    rpmbuild_with(spec, work, name, &[])
}

/// `rpmbuild` with extra `--define NAME VALUE`s.
pub fn rpmbuild_with(spec: &str, work: &Path, name: &str, defines: &[(&str, &str)]) -> PathBuf {
    let top = work.join("rpmbuild");
    let out = work.join("rpms").join(name);
    std::fs::create_dir_all(&top).unwrap();
    let spec_path = work.join(format!("{name}.spec"));
    std::fs::write(&spec_path, spec).unwrap();
    let mut c = Command::new("rpmbuild");
    c.arg("-bb")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg("--define")
        .arg(format!("_rpmdir {}", out.display()))
        .args(["--define", "_build_id_links none", "--quiet"]);
    for (k, v) in defines {
        c.arg("--define").arg(format!("{k} {v}"));
    }
    ok(c.arg(&spec_path));
    walk_rpms(&out)
        .into_iter()
        .next()
        .expect("rpmbuild produced no package")
}

/// `rpmbuild` under a name of its own (`s0`, `s1`, ...), for tests that
/// build many packages into one work directory.
pub fn rpmbuild_next(spec: &str, work: &Path) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    rpmbuild(
        spec,
        work,
        &format!("s{}", N.fetch_add(1, Ordering::SeqCst)),
    )
}

/// Every `.rpm` below `dir`.
pub fn walk_rpms(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "rpm"))
        .map(|e| e.path().to_path_buf())
        .collect()
}

/// Index `dir` with `createrepo_c -q`.
pub fn createrepo_q(dir: &Path) {
    ok(Command::new("createrepo_c").arg("-q").arg(dir));
}
