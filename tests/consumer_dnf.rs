//! What a host running dnf meets (issue 14, item 3): a signed repository
//! holding khotfix-built hotfixes for four kernels, installed with real dnf
//! into installroots that hold two of those kernels. And (item 5) a host
//! that installed the `khotfix-release` RPM keeps trusting only the packaged
//! key when the server turns hostile (HTTP on 127.0.0.1).
//!
//! Stand-ins (things that cannot exist on this machine, named as such):
//! * `kernel` packages built with rpmbuild that, like EL and Alibaba Cloud
//!   Linux kernels, provide `kernel-uname-r = <uname -r>` and ship
//!   `/lib/modules/<uname -r>/`;
//! * the kpatch runtime (tests/stand-ins/kpatch-runtime): does to the file
//!   system what kpatch 0.9.11's `install`/`uninstall` do;
//! * `/bin/sh` and the few tools it needs: busybox-static.
//!
//! The hotfixes themselves are real: `khotfix::package::build_rpm` on a
//! kbuild module signed by `khotfix sign`, published by `khotfix publish`.
//! Tools: rpmbuild, createrepo_c, dnf, rpm, busybox, make + Debian's
//! linux-headers (the module).

mod support;

use khotfix::distro::Distro;
use khotfix::kernel::KernelRelease;
use khotfix::keys::PackageSigner;
use khotfix::package::{build_rpm, BuildOptions, Compression, PackageInput};
use khotfix::recipe::Hotfix;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::bin::khotfix;
use support::http::Http;
use support::kernel::{generate_keys, modules, sign_module};
use support::process::{output, run};
use support::rpm::{rpmbuild, BUSYBOX_SH_SPEC};
use support::tmp::tmpdir;

/// Installed on the host; A is the one running.
const KA: &str = "5.10.134-18.al8.x86_64";
const KB: &str = "5.10.134-19.1.al8.x86_64";
/// Hotfixes exist for these too, but the host does not have them. KC's
/// kernel package is in the distro stand-in repository, KD's nowhere.
const KC: &str = "5.10.134-16.al8.x86_64";
const KD: &str = "5.10.134-20.al8.x86_64";

fn stand_in(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/stand-ins")
        .join(name)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A stand-in EL kernel package for `kver` (`V-R.dist.arch`).
fn kernel_spec(kver: &str) -> String {
    let (v, rest) = kver.split_once('-').unwrap();
    let r = rest.trim_end_matches(".x86_64");
    format!(
        r#"
%global __os_install_post %{{nil}}
Name: kernel
Version: {v}
Release: {r}
Summary: STAND-IN kernel package (provides kernel-uname-r like EL kernels)
License: GPL-2.0
BuildArch: x86_64
AutoReqProv: no
Provides: kernel-uname-r = {kver}
%description
Stand-in for an EL kernel package: no kernel, just its uname-r provide.
%install
mkdir -p %{{buildroot}}/lib/modules/{kver} %{{buildroot}}/boot
echo stand-in > %{{buildroot}}/boot/vmlinuz-{kver}
%files
/lib/modules/{kver}
/boot/vmlinuz-{kver}
"#
    )
}

fn kpatch_spec() -> String {
    format!(
        r#"
Name: kpatch
Version: 0.9.11
Release: 1
Summary: STAND-IN kpatch runtime (file operations of kpatch install/uninstall)
License: GPL-2.0
BuildArch: noarch
AutoReqProv: no
Requires: /bin/sh
%description
Stand-in for the kpatch runtime; see tests/stand-ins/kpatch-runtime.
%install
mkdir -p %{{buildroot}}/usr/sbin %{{buildroot}}/var/log
cp {} %{{buildroot}}/usr/sbin/kpatch
chmod 755 %{{buildroot}}/usr/sbin/kpatch
%files
/usr/sbin/kpatch
%dir /var/log
"#,
        stand_in("kpatch-runtime").display()
    )
}

struct World {
    work: PathBuf,
    /// The distro stand-in repository (file://, unsigned like a local mirror).
    base: PathBuf,
    /// The khotfix repository as `khotfix publish` wrote it.
    repo: PathBuf,
}

fn hotfix(id: u64) -> Hotfix {
    Hotfix {
        id,
        name: format!("fix-{id}"),
        summary: format!("hotfix {id}"),
        description: format!("Hotfix {id}.\n"),
        version: "1.0".into(),
        changelog: vec![],
    }
}

/// Kernels A and B (+ C in the distro repo), hotfix 22519882 for A, B, C, D
/// and hotfix 22519883 for A, published into one signed repository.
fn world() -> World {
    let work = tmpdir();
    let keys = work.join("keys");
    generate_keys(&keys);
    let signer = PackageSigner::load(&keys.join("package-signing.secret.asc"), None).unwrap();
    let module = work.join("signed.ko");
    sign_module(&keys, &module);
    let out = work.join("hotfixes");
    std::fs::create_dir_all(&out).unwrap();
    let mut hotfixes = Vec::new();
    for (id, kver) in [
        (22519882, KA),
        (22519882, KB),
        (22519882, KC),
        (22519882, KD),
        (22519883, KA),
    ] {
        let input = PackageInput {
            hotfix: hotfix(id),
            kernel: KernelRelease::parse(kver).unwrap(),
            distro: Distro::builtin("alinux3").unwrap(),
            ko_path: module.clone(),
            patch: "--- a\n+++ b\n".into(),
        };
        let opts = BuildOptions {
            compression: Compression::Xz,
            source_date_epoch: Some(1754322514),
        };
        hotfixes.push(build_rpm(&input, &signer, &out, &opts).unwrap().path);
    }
    let repo = work.join("repo");
    run(khotfix()
        .args(["publish", "--repo"])
        .arg(&repo)
        .arg("--gpg-key")
        .arg(keys.join("package-signing.secret.asc"))
        .arg("--base-url")
        .arg(format!("file://{}", repo.display()))
        .args(&hotfixes));

    let base = base_repo(&work, &[KA, KB, KC]);
    World { work, base, repo }
}

/// The distro stand-in repository: /bin/sh, kpatch and `kernels`.
fn base_repo(work: &Path, kernels: &[&str]) -> PathBuf {
    let base = work.join("base");
    std::fs::create_dir_all(&base).unwrap();
    let mut base_rpms = vec![
        rpmbuild(BUSYBOX_SH_SPEC, work, "sh"),
        rpmbuild(&kpatch_spec(), work, "kpatch"),
    ];
    for (i, k) in kernels.iter().enumerate() {
        base_rpms.push(rpmbuild(&kernel_spec(k), work, &format!("kernel{i}")));
    }
    for p in &base_rpms {
        std::fs::copy(p, base.join(p.file_name().unwrap())).unwrap();
    }
    run(Command::new("createrepo_c").arg("-q").arg(&base));
    base
}

/// dnf into `root` with real .repo files in a private reposdir: the
/// distro stand-in repository (`base`) and the `khotfix.repo` that
/// `khotfix publish` wrote (gpgcheck and repo_gpgcheck on). Debian's
/// dnf.conf has skip_if_unavailable=True, which would hide every metadata
/// failure: always False here.
fn dnf(w: &World, root: &Path, args: &[&str]) -> Output {
    let reposdir = w.work.join("yum.repos.d");
    if !reposdir.is_dir() {
        std::fs::create_dir_all(&reposdir).unwrap();
        std::fs::write(
            reposdir.join("base.repo"),
            format!(
                "[base]\nname=distro stand-in\nbaseurl=file://{}/\ngpgcheck=0\nmetadata_expire=0\n",
                w.base.display()
            ),
        )
        .unwrap();
        std::fs::copy(
            w.repo.join("al8/khotfix.repo"),
            reposdir.join("khotfix.repo"),
        )
        .unwrap();
    }
    output(support::dnf::dnf_root(&reposdir, &w.work.join("dnf-cache"), root).args(args))
}

/// A host root holding kernels A and B, kpatch and /bin/sh.
fn host(w: &World, name: &str) -> PathBuf {
    let root = w.work.join(name);
    let o = dnf(
        w,
        &root,
        &[
            "install",
            "busybox-sh",
            "kpatch",
            &format!("kernel-uname-r = {KA}"),
            &format!("kernel-uname-r = {KB}"),
        ],
    );
    assert!(o.status.success(), "preparing {name}: {}", text(&o));
    root
}

fn installed_hotfixes(root: &Path) -> Vec<String> {
    let o = output(
        Command::new("rpm")
            .arg("--root")
            .arg(root)
            .args(["-qa", "--qf", "%{NAME}\n"]),
    );
    let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with("kernel-hotfix-") || *l == "kernel")
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn installed_kernels(root: &Path) -> Vec<String> {
    let o = output(Command::new("rpm").arg("--root").arg(root).args([
        "-q",
        "--qf",
        "%{VERSION}-%{RELEASE}.%{ARCH}\n",
        "kernel",
    ]));
    let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn hotfix_names(pairs: &[(u64, &str)]) -> Vec<String> {
    let mut v: Vec<String> = pairs
        .iter()
        .map(|(id, k)| {
            format!(
                "kernel-hotfix-{id}-{}",
                KernelRelease::parse(k).unwrap().package_suffix()
            )
        })
        .collect();
    v.push("kernel".into());
    v.push("kernel".into());
    v.sort();
    v
}

#[test]
fn hosts_install_the_hotfixes_for_their_kernels() {
    let w = world();
    // al8 hotfixes live in the al8 part, with its own .repo; nothing at
    // the top level (no untagged packages were published).
    let repo_file = std::fs::read_to_string(w.repo.join("al8/khotfix.repo")).unwrap();
    for line in [
        "skip_if_unavailable=False",
        "[khotfix-al8]",
        &format!("baseurl=file://{}/al8", w.repo.display()),
    ] {
        assert!(repo_file.lines().any(|l| l == line), "{line}: {repo_file}");
    }
    assert!(!w.repo.join("Packages").exists());
    assert!(!w.repo.join("khotfix.repo").exists());

    // 1. The plain glob: dnf (strict, its default) refuses the whole
    //    request because two matches need kernels the host does not have;
    //    nothing is installed, and the error names the missing kernels.
    let root = host(&w, "plain");
    let o = dnf(&w, &root, &["install", "kernel-hotfix-*"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("nothing provides kernel-uname-r = {KD}")),
        "{}",
        text(&o)
    );
    assert_eq!(installed_hotfixes(&root), hotfix_names(&[]));

    // 2. The documented command for every installed kernel: the glob over
    //    the khotfix repository only, with strict=0 (yum 3: --skip-broken).
    //    Hotfixes for A and B are installed; C and D are skipped.
    let o = dnf(
        &w,
        &root,
        &[
            "--setopt=strict=0",
            "--disablerepo=*",
            "--enablerepo=khotfix*",
            "install",
            "kernel-hotfix-*",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        installed_hotfixes(&root),
        hotfix_names(&[(22519882, KA), (22519882, KB), (22519883, KA)])
    );
    assert_eq!(
        installed_kernels(&root),
        vec![KA, KB],
        "no kernel pulled in"
    );
    // Installed for boot where kpatch.service's `kpatch load --all` looks:
    // /var/lib/kpatch/<uname -r>/*.ko, for the running kernel A and for B.
    for (k, id) in [(KA, 22519882), (KA, 22519883), (KB, 22519882)] {
        let p = root.join(format!("var/lib/kpatch/{k}/kpatch-{id}.ko"));
        assert!(p.is_file(), "{} missing", p.display());
        assert_eq!(
            std::fs::read(&p).unwrap(),
            std::fs::read(root.join(format!("var/khotfix/{k}/{id}/kpatch-{id}.ko"))).unwrap()
        );
    }
    assert!(!root.join(format!("var/lib/kpatch/{KC}")).exists());
    // Another root: the scriptlets loaded nothing.
    let log = std::fs::read_to_string(root.join("var/log/kpatch-stand-in.log")).unwrap();
    assert!(!log.lines().any(|l| l.starts_with("load")), "{log}");
    // The host can list its hotfixes per kernel.
    let q = dnf(
        &w,
        &root,
        &[
            "-q",
            "repoquery",
            "--installed",
            "--qf",
            "%{name}",
            "--whatprovides",
            &format!("kernel-hotfix = {KA}"),
        ],
    );
    let listed = String::from_utf8_lossy(&q.stdout);
    assert_eq!(listed.lines().count(), 2, "{}", text(&q));

    // Running the same command again changes nothing and succeeds.
    let o = dnf(
        &w,
        &root,
        &[
            "--setopt=strict=0",
            "--disablerepo=*",
            "--enablerepo=khotfix*",
            "install",
            "kernel-hotfix-*",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));

    // 3. Removing a hotfix uninstalls it from kpatch (another root: no
    //    unload; the live unload is tests/package_rpm.rs's).
    let name_b = format!(
        "kernel-hotfix-22519882-{}",
        KernelRelease::parse(KB).unwrap().package_suffix()
    );
    let o = dnf(&w, &root, &["remove", &name_b]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!root
        .join(format!("var/lib/kpatch/{KB}/kpatch-22519882.ko"))
        .exists());
    assert!(root
        .join(format!("var/lib/kpatch/{KA}/kpatch-22519882.ko"))
        .exists());
    let log = std::fs::read_to_string(root.join("var/log/kpatch-stand-in.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l == format!("uninstall -k {KB} kpatch-22519882.ko")),
        "{log}"
    );

    // 4. Every hotfix for the running kernel A with one command: a name
    //    glob on the kernel's version-release (what package names carry).
    let root = host(&w, "running");
    // The README's command, run by the shell: the suffix from `uname -r`.
    let suffix = run(Command::new("sh").arg("-c").arg(format!(
        "printf '%s\\n' {KA} | sed -E 's/\\.[^.]+\\.[^.]+$//'"
    )));
    let suffix = suffix.trim();
    assert_eq!(suffix, KernelRelease::parse(KA).unwrap().package_suffix());
    let o = dnf(
        &w,
        &root,
        &["install", &format!("kernel-hotfix-*-{suffix}")],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        installed_hotfixes(&root),
        hotfix_names(&[(22519882, KA), (22519883, KA)])
    );

    // 5. A hotfix for a kernel the host does not have is refused by name,
    //    and with the distro repository enabled the glob with strict=0
    //    would pull that kernel in: why the documented command enables
    //    only the khotfix repository.
    let o = dnf(
        &w,
        &root,
        &[
            "--disablerepo=*",
            "--enablerepo=khotfix*",
            "install",
            &format!(
                "kernel-hotfix-22519882-{}",
                KernelRelease::parse(KC).unwrap().package_suffix()
            ),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("nothing provides kernel-uname-r = {KC}")),
        "{}",
        text(&o)
    );
    let o = dnf(
        &w,
        &root,
        &["--setopt=strict=0", "install", "kernel-hotfix-*"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        installed_kernels(&root),
        vec![KC, KA, KB],
        "dnf satisfied kernel-uname-r = {KC} from the distro repository"
    );
}

// ---- trust on first use, done right (issue 14, item 5) ---------------------

/// dnf into `root` with the .repo files in `reposdir` only, the metadata
/// always fetched again (a server change must be seen), and
/// skip_if_unavailable=False (Debian's dnf.conf would hide failures).
fn dnf_in(reposdir: &Path, cache: &Path, root: &Path, args: &[&str]) -> Output {
    output(
        support::dnf::dnf_root(reposdir, cache, root)
            .arg("--refresh")
            .args(args),
    )
}

fn rpm_in(root: &Path, args: &[&str]) -> Output {
    output(Command::new("rpm").arg("--root").arg(root).args(args))
}

/// A host that installed `khotfix-release` once over a trusted channel
/// takes the repository key from the packaged file: a server that serves
/// another key cannot make it trust that key, and a repository re-signed
/// with it is refused. The served .repo (key fetched from the server)
/// accepts exactly that takeover: the control.
#[test]
fn the_release_rpm_pins_the_repository_key() {
    let work = tmpdir();
    let keygen = |name: &str| {
        let dir = work.join(name);
        generate_keys(&dir);
        dir
    };
    let (ours, theirs) = (keygen("keys"), keygen("other-keys"));
    let module = work.join("signed.ko");
    run(khotfix()
        .args(["sign", "--key"])
        .arg(ours.join("module-signing.key.pem"))
        .arg("--cert")
        .arg(ours.join("module-signing.crt.pem"))
        .arg("-o")
        .arg(&module)
        .arg(&modules()[0]));
    let out = work.join("hotfixes");
    std::fs::create_dir_all(&out).unwrap();
    let package = |id: u64, keys: &Path| {
        let signer = PackageSigner::load(&keys.join("package-signing.secret.asc"), None).unwrap();
        let input = PackageInput {
            hotfix: hotfix(id),
            kernel: KernelRelease::parse(KA).unwrap(),
            distro: Distro::builtin("alinux3").unwrap(),
            ko_path: module.clone(),
            patch: "--- a\n+++ b\n".into(),
        };
        let opts = BuildOptions {
            compression: Compression::Xz,
            source_date_epoch: Some(1754322514),
        };
        build_rpm(&input, &signer, &out, &opts).unwrap().path
    };
    let good = package(22519882, &ours);
    let evil = package(22519899, &theirs);
    let suffix = KernelRelease::parse(KA).unwrap().package_suffix();
    let (good_name, evil_name) = (
        format!("kernel-hotfix-22519882-{suffix}"),
        format!("kernel-hotfix-22519899-{suffix}"),
    );

    let repo = work.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let http = Http::serve(&repo);
    let base_url = format!("http://127.0.0.1:{}/", http.port);
    let publish = |keys: &Path, extra: &[&str], rpms: &[&PathBuf]| {
        run(khotfix()
            .args(["publish", "--repo"])
            .arg(&repo)
            .arg("--gpg-key")
            .arg(keys.join("package-signing.secret.asc"))
            .args(extra)
            .args(rpms))
    };
    publish(&ours, &["--base-url", &base_url], &[&good]);
    let release = repo.join("khotfix-release-latest-al8.noarch.rpm");
    let release_bytes = std::fs::read(&release).unwrap();
    let served_repo = std::fs::read_to_string(repo.join("al8/khotfix.repo")).unwrap();
    let v = output(khotfix().args(["repo", "verify"]).arg(&repo));
    assert!(v.status.success(), "{}", text(&v));

    // The host: the distro stand-ins and kernel A, from an unsigned local
    // mirror, in a reposdir of its own.
    let base = base_repo(&work, &[KA]);
    let host = |name: &str| {
        let root = work.join(name);
        let reposdir = work.join(format!("{name}.repos.d"));
        std::fs::create_dir_all(&reposdir).unwrap();
        std::fs::write(
            reposdir.join("base.repo"),
            format!(
                "[base]\nname=distro stand-in\nbaseurl=file://{}/\ngpgcheck=0\n",
                base.display()
            ),
        )
        .unwrap();
        let cache = work.join(format!("{name}.cache"));
        let o = dnf_in(
            &reposdir,
            &cache,
            &root,
            &[
                "install",
                "busybox-sh",
                "kpatch",
                &format!("kernel-uname-r = {KA}"),
            ],
        );
        assert!(o.status.success(), "preparing {name}: {}", text(&o));
        (root, reposdir, cache)
    };
    let (root, reposdir, cache) = host("pinned");

    // Once, over a trusted channel: the key (here: the publisher's own
    // key directory), its signature on the release RPM, then the RPM.
    let trusted_key = ours.join("RPM-GPG-KEY-khotfix");
    let untrusted = work.join("untrusted-root");
    std::fs::create_dir_all(&untrusted).unwrap();
    rpm_in(
        &untrusted,
        &[
            "--import",
            theirs.join("RPM-GPG-KEY-khotfix").to_str().unwrap(),
        ],
    );
    let k = rpm_in(&untrusted, &["-K", release.to_str().unwrap()]);
    assert!(
        !k.status.success(),
        "rpm -K accepted another key: {}",
        text(&k)
    );
    let imported = rpm_in(&root, &["--import", trusted_key.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", text(&imported));
    let k = rpm_in(&root, &["-K", release.to_str().unwrap()]);
    assert!(
        k.status.success() && text(&k).contains("signatures OK"),
        "{}",
        text(&k)
    );
    let i = rpm_in(&root, &["-i", release.to_str().unwrap()]);
    assert!(i.status.success(), "{}", text(&i));
    let packaged = std::fs::read_to_string(root.join("etc/yum.repos.d/khotfix.repo")).unwrap();
    for line in [
        "[khotfix-al8]".to_string(),
        format!("baseurl={base_url}al8"),
        "gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-khotfix".into(),
        "gpgcheck=1".into(),
        "repo_gpgcheck=1".into(),
    ] {
        assert!(packaged.lines().any(|l| l == line), "{line}: {packaged}");
    }
    assert_eq!(
        std::fs::read(root.join("etc/pki/rpm-gpg/RPM-GPG-KEY-khotfix")).unwrap(),
        std::fs::read(&trusted_key).unwrap()
    );

    // The server now serves another key at the key URL.
    std::fs::copy(
        theirs.join("RPM-GPG-KEY-khotfix"),
        repo.join("RPM-GPG-KEY-khotfix"),
    )
    .unwrap();

    // dnf 4.14 reads a file:// gpgkey from the host even with
    // --installroot (librepo opens the URL as is): the installed .repo,
    // used as it is, names a file this host does not have. That also shows
    // where the key comes from: the file, not the server.
    let host_has_key = Path::new("/etc/pki/rpm-gpg/RPM-GPG-KEY-khotfix").exists();
    if !host_has_key {
        let o = dnf_in(
            &root.join("etc/yum.repos.d"),
            &cache,
            &root,
            &["install", &good_name],
        );
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(
            text(&o).contains("Couldn't open file /etc/pki/rpm-gpg/RPM-GPG-KEY-khotfix"),
            "{}",
            text(&o)
        );
    }
    // So the test's reposdir gets the installed .repo with the key path
    // moved into the root: what dnf on the host itself reads.
    std::fs::write(
        reposdir.join("khotfix.repo"),
        packaged.replace(
            "gpgkey=file:///etc/pki/",
            &format!("gpgkey=file://{}/etc/pki/", root.display()),
        ),
    )
    .unwrap();

    // 1. The hotfix installs: repomd.xml.asc and the package verify against
    //    the packaged key while the server serves another one.
    let o = dnf_in(&reposdir, &cache, &root, &["install", &good_name]);
    assert!(o.status.success(), "{}", text(&o));
    let q = rpm_in(&root, &["-q", &good_name]);
    assert!(q.status.success(), "{}", text(&q));

    // 2. A package signed by the other key, in metadata our key signed.
    //    `khotfix publish` itself refuses it (issue 16: foreign-key inputs);
    //    an attacker with write access to Packages/ drops it in by hand and
    //    the next publish indexes it. dnf refuses its signature, nothing is
    //    installed. (The release RPM, same content, is the same file.)
    let refused = output(
        khotfix()
            .args(["publish", "--repo"])
            .arg(&repo)
            .arg("--gpg-key")
            .arg(ours.join("package-signing.secret.asc"))
            .args(["--base-url", &base_url])
            .arg(&evil),
    );
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("signed by another key"),
        "{}",
        text(&refused)
    );
    std::fs::copy(
        &evil,
        repo.join("al8/Packages").join(evil.file_name().unwrap()),
    )
    .unwrap();
    publish(&ours, &["--base-url", &base_url], &[]);
    assert_eq!(std::fs::read(&release).unwrap(), release_bytes);
    let o = dnf_in(&reposdir, &cache, &root, &["install", &evil_name]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("GPG check FAILED"), "{}", text(&o));
    assert!(!rpm_in(&root, &["-q", &evil_name]).status.success());

    // 3. A takeover: the server re-signs everything with its own key (and
    //    serves it). The pinned host refuses the repository metadata ...
    publish(&theirs, &[], &[]);
    let o = dnf_in(&reposdir, &cache, &root, &["install", &evil_name]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("repomd.xml GPG signature verification error"),
        "{}",
        text(&o)
    );
    assert!(!rpm_in(&root, &["-q", &evil_name]).status.success());
    // ... while a host with the served .repo (key from the server, trust on
    // first use) installs the other key's package: what the release RPM is for.
    let (tofu, tofu_repos, tofu_cache) = host("tofu");
    std::fs::write(tofu_repos.join("khotfix.repo"), &served_repo).unwrap();
    let o = dnf_in(&tofu_repos, &tofu_cache, &tofu, &["install", &evil_name]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(rpm_in(&tofu, &["-q", &evil_name]).status.success());
}
