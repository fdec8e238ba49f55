//! Real kernel-like RPMs for the fetch tests, built once per test binary with
//! rpmbuild from a generated spec (kernel SRPM, kernel, kernel-devel,
//! kernel-debuginfo, kernel-debuginfo-common-x86_64), and yum repositories
//! made from them with createrepo_c. Built once per test binary because
//! rpmbuild takes seconds and every fetch test needs the same set.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Kernel releases the fixture builds (`version-release`, dist al8, x86_64).
pub const RELEASES: &[(&str, &str)] = &[("5.10.134", "18.al8"), ("5.10.134", "19.1.al8")];
/// The release whose kernel-devel carries a large incompressible blob
/// (for resume and kill tests).
pub const BIG: &str = "5.10.134-18.al8";
pub const BIG_KERNEL: &str = "5.10.134-18.al8.x86_64";
pub const BIG_BLOB: usize = 3 << 20;

const SPEC: &str = r#"%global debug_package %{nil}
%global __os_install_post %{nil}
%define _build_id_links none
Name: kernel
Version: %{kver}
Release: %{krel}
Summary: khotfix test stand-in for a kernel package set
License: GPLv2
Source0: linux.txt
Source1: blob.bin

%description
Not a kernel: a package set shaped like one, for the fetch tests.

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
cp %{SOURCE1} %{buildroot}/usr/src/kernels/$K/blob.bin
echo "Makefile $K" > %{buildroot}/usr/src/kernels/$K/Makefile
echo "vmlinux $K" > %{buildroot}/usr/lib/debug/lib/modules/$K/vmlinux
cp %{SOURCE0} %{buildroot}/usr/src/debug/kernel-$K/README

%files
/boot/vmlinuz-%{version}-%{release}.x86_64

%files devel
/usr/src/kernels/%{version}-%{release}.x86_64

%files debuginfo
/usr/lib/debug/lib/modules/%{version}-%{release}.x86_64

%files -n kernel-debuginfo-common-x86_64
/usr/src/debug/kernel-%{version}-%{release}.x86_64
"#;

/// Directory holding every built RPM and SRPM (flat).
pub fn rpm_set() -> &'static Path {
    static SET: OnceLock<PathBuf> = OnceLock::new();
    SET.get_or_init(build_set)
}

fn build_set() -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix("khotfix-rpmset-")
        .tempdir()
        .unwrap()
        .keep();
    let top = dir.join("top");
    let out = dir.join("rpms");
    std::fs::create_dir_all(top.join("SOURCES")).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(dir.join("kernel.spec"), SPEC).unwrap();
    std::fs::write(top.join("SOURCES/linux.txt"), "stand-in kernel source\n").unwrap();
    for (v, r) in RELEASES {
        let size = if format!("{v}-{r}") == BIG {
            BIG_BLOB
        } else {
            4096
        };
        let mut blob = vec![0u8; size];
        let mut x: u64 = 0x9e3779b97f4a7c15 ^ (r.len() as u64);
        for b in blob.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        std::fs::write(top.join("SOURCES/blob.bin"), &blob).unwrap();
        let st = Command::new("rpmbuild")
            .args(["-ba", "--nodeps", "--target", "x86_64", "--quiet"])
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .args([
                "--define",
                &format!("kver {v}"),
                "--define",
                &format!("krel {r}"),
            ])
            .args([
                "--define",
                "_binary_payload w1.gzdio",
                "--define",
                "_source_payload w1.gzdio",
            ])
            .arg(dir.join("kernel.spec"))
            .status()
            .expect("rpmbuild (apt-get install rpm)");
        assert!(st.success(), "rpmbuild failed");
    }
    for e in walkdir::WalkDir::new(&top) {
        let e = e.unwrap();
        if e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "rpm") {
            std::fs::copy(e.path(), out.join(e.file_name())).unwrap();
        }
    }
    out
}

/// Copy the RPMs whose file names satisfy `pick` into `dir` (flat, under Packages/).
pub fn copy_rpms(dir: &Path, pick: impl Fn(&str) -> bool) {
    let pkgs = dir.join("Packages");
    std::fs::create_dir_all(&pkgs).unwrap();
    for e in std::fs::read_dir(rpm_set()).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        if pick(&name) {
            std::fs::copy(e.path(), pkgs.join(&name)).unwrap();
        }
    }
}

/// Index `dir` with createrepo_c, primary compressed with `compress` (gz,
/// xz, zstd). Debian's createrepo_c 0.17 is built without zstd: for `zstd`
/// it writes gzip and the primary is recompressed with the real `zstd` tool
/// and repomd.xml updated to match (what createrepo_c >= 0.20 writes).
pub fn createrepo(dir: &Path, compress: &str) {
    let native = if compress == "zstd" { "gz" } else { compress };
    let out = Command::new("createrepo_c")
        .args([
            "--quiet",
            "--no-database",
            "--general-compress-type",
            native,
        ])
        .arg(dir)
        .output()
        .expect("createrepo_c (apt-get install createrepo-c)");
    assert!(
        out.status.success(),
        "createrepo_c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if compress == "zstd" {
        use sha2::Digest;
        let (gz, _) = primary_of(dir);
        let plain = dir.join("repodata/primary.xml");
        let st = Command::new("sh")
            .arg("-c")
            .arg("gzip -dc \"$1\" > \"$2\" && zstd -q -f \"$2\" -o \"$2.zst\"")
            .arg("sh")
            .arg(&gz)
            .arg(&plain)
            .status()
            .unwrap();
        assert!(st.success(), "zstd");
        let zst = std::fs::read(dir.join("repodata/primary.xml.zst")).unwrap();
        let xml = std::fs::read(&plain).unwrap();
        std::fs::remove_file(&plain).unwrap();
        let href = "repodata/primary.xml.zst";
        set_primary_entry(dir, &format!(
            "<data type=\"primary\"><checksum type=\"sha256\">{}</checksum><open-checksum type=\"sha256\">{}</open-checksum><location href=\"{href}\"/><size>{}</size><open-size>{}</open-size></data>",
            hex::encode(sha2::Sha256::digest(&zst)),
            hex::encode(sha2::Sha256::digest(&xml)),
            zst.len(),
            xml.len()
        ));
    }
}

/// The three repositories of the test distro, under `base`: `source`
/// (SRPMs), `debug` (debuginfo, debuginfo-common), `os` (kernel, kernel-devel).
pub fn make_repos(base: &Path, compress: &str) {
    let source = base.join("source");
    let debug = base.join("debug");
    let os = base.join("os");
    copy_rpms(&source, |n| n.ends_with(".src.rpm"));
    copy_rpms(&debug, |n| n.starts_with("kernel-debuginfo"));
    copy_rpms(&os, |n| {
        (n.starts_with("kernel-5") || n.starts_with("kernel-devel-")) && !n.ends_with(".src.rpm")
    });
    for d in [&source, &debug, &os] {
        createrepo(d, compress);
    }
}

/// The built-in alinux3 distro pointed at test repositories under `base_url`
/// (`<base_url>source/`, `debug/`, `os/`), every repository indexed.
pub fn test_distro(base_url: &str) -> khotfix::distro::Distro {
    let mut d = khotfix::distro::Distro::builtin("alinux3").unwrap();
    for r in d.repos.iter_mut() {
        let sub = match r.kind {
            khotfix::distro::RepoKind::Source => "source",
            khotfix::distro::RepoKind::Debuginfo => "debug",
            khotfix::distro::RepoKind::Devel => "os",
        };
        r.mirrors = vec![format!("{base_url}{sub}/")];
        r.direct = false;
    }
    d
}

/// `KHOTFIX_MIRRORS`-style overrides pointing the built-in alinux3 at the
/// test server `srv`. Its source repository is `direct` (no repodata):
/// files by name under Packages/.
pub fn mirrors(srv: &super::http::Server) -> Vec<String> {
    vec![
        format!("plus-source={}source/Packages/", srv.url()),
        format!("plus-debug={}debug/", srv.url()),
        format!("plus={}os/", srv.url()),
    ]
}

/// Path of the primary metadata file of a repository and its href.
pub fn primary_of(repo: &Path) -> (PathBuf, String) {
    let xml = std::fs::read_to_string(repo.join("repodata/repomd.xml")).unwrap();
    let data = &xml[xml.find("<data type=\"primary\">").unwrap()..];
    let href = data
        .split("href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    (repo.join(&href), href)
}

/// Rewrite a repository's primary.xml with `edit` and point repomd.xml at
/// the result (gzip), with correct checksums: metadata that is internally
/// consistent but says what the test needs.
pub fn rewrite_primary(repo: &Path, edit: impl Fn(String) -> String) {
    use sha2::Digest;
    use std::io::{Read, Write};
    let (path, _) = primary_of(repo);
    let mut xml = String::new();
    khotfix::repodata::decompress(std::fs::File::open(&path).unwrap())
        .unwrap()
        .read_to_string(&mut xml)
        .unwrap();
    let xml = edit(xml);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(xml.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let href = "repodata/edited-primary.xml.gz";
    std::fs::write(repo.join(href), &gz).unwrap();
    let sum = hex::encode(sha2::Sha256::digest(&gz));
    let open = hex::encode(sha2::Sha256::digest(xml.as_bytes()));
    set_primary_entry(repo, &format!(
        "<data type=\"primary\"><checksum type=\"sha256\">{sum}</checksum><open-checksum type=\"sha256\">{open}</open-checksum><location href=\"{href}\"/><size>{}</size><open-size>{}</open-size></data>",
        gz.len(),
        xml.len()
    ));
}

/// Replace the `<data type="primary">` block of repomd.xml.
pub fn set_primary_entry(repo: &Path, block: &str) {
    let p = repo.join("repodata/repomd.xml");
    let xml = std::fs::read_to_string(&p).unwrap();
    let start = xml.find("<data type=\"primary\">").unwrap();
    let end = start + xml[start..].find("</data>").unwrap() + "</data>".len();
    let new = format!("{}{block}{}", &xml[..start], &xml[end..]);
    std::fs::write(p, new).unwrap();
}

/// sha256 of a file, hex.
pub fn sha256_of(p: &Path) -> String {
    khotfix::util::fsx::sha256_file(p).unwrap()
}

/// The built RPM with this file name.
pub fn rpm_path(name: &str) -> PathBuf {
    rpm_set().join(name)
}
