//! Issue 16 items 5, 6, 7 and 13: what `khotfix publish` must refuse, and
//! the replacements it must make atomically. Real tools throughout: gpg
//! keys, rpmbuild/rpmsign and the crate's own `package` code for packages,
//! `rpm -K`, dnf over HTTP with gpgcheck and repo_gpgcheck, kill -9.
//!
//! Every refusal is checked the same way: exit 2, one line on stderr naming
//! the file, and the repository byte-for-byte as it was (nothing written
//! outside it either).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::bin::khotfix;
use support::gpg::{keys, rpmsign, Keys};
use support::http::Http;
use support::kernel::{generate_keys, sign_module};
use support::process::{ok, output, text};
use support::publish::{publish, publish_ok, verify};
use support::rpm::rpmbuild_next;

fn spec(name: &str, epoch: u32, content: &str) -> String {
    format!(
        "Name: {name}\n{}Version: 1.0\nRelease: 1\nSummary: test\nLicense: GPL-2.0\nBuildArch: x86_64\nAutoReqProv: no\n\
         %description\ntest\n%install\nmkdir -p %{{buildroot}}/usr/lib/khf\necho '{content}' > %{{buildroot}}/usr/lib/khf/{name}\n\
         %files\n/usr/lib/khf/{name}\n",
        if epoch > 0 { format!("Epoch: {epoch}\n") } else { String::new() }
    )
}

/// Signed packages built in-process with the rpm crate (fast).
fn gen_rpms(keys: &Keys, dir: &Path, prefix: &str, n: usize, fill: u8) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let signer = rpm::signature::pgp::Signer::from_asc_file(&keys.secret).unwrap();
    (0..n)
        .map(|i| {
            let name = format!("khf-{prefix}{i}");
            let mut b = rpm::PackageBuilder::new(&name, "1.0", "GPL-2.0", "x86_64", "generated");
            b.release("1");
            b.with_file_contents(
                vec![fill; 4096],
                rpm::FileOptions::new(format!("/usr/lib/khf/{prefix}{i}")),
            )
            .unwrap();
            let p = dir.join(format!("{name}-1.0-1.x86_64.rpm"));
            b.build_and_sign(&signer).unwrap().write_file(&p).unwrap();
            p
        })
        .collect()
}

fn verify_ok(repo: &Path) -> String {
    let v = verify(repo);
    assert!(v.status.success(), "repo verify: {}", text(&v.stdout));
    text(&v.stdout)
}

/// Every path under `dir` with its bytes (symlinks as their targets).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .flatten()
        .map(|e| {
            let p = e.path().to_path_buf();
            let b = if e.file_type().is_symlink() {
                std::fs::read_link(&p)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
                    .into_bytes()
            } else if e.file_type().is_file() {
                std::fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            (p, b)
        })
        .collect()
}

/// Exit 2, one line naming `names`, the repository unchanged.
fn assert_refused(out: &Output, before: &BTreeMap<PathBuf, Vec<u8>>, repo: &Path, names: &[&str]) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    for n in names {
        assert!(err.contains(n), "{n} not named: {err}");
    }
    assert!(&snapshot(repo) == before, "the repository changed: {err}");
}

fn dnf(url: &str, cache: &Path, args: &[&str]) -> Output {
    dnf_at(url, url, cache, args)
}

/// dnf over one part of the repository (`url`, e.g. `…/al8/`), with the
/// repository key from the top level (`root_url`).
fn dnf_at(url: &str, root_url: &str, cache: &Path, args: &[&str]) -> Output {
    let mut c = support::dnf::dnf_no_repos(cache);
    c.arg("-q");
    support::dnf::signed_repo(&mut c, "khf", url, &support::dnf::key_url(root_url));
    output(c.args(args))
}

fn dnf_ok(url: &str, cache: &Path, args: &[&str]) -> String {
    let o = dnf(url, cache, args);
    assert!(o.status.success(), "dnf {args:?}: {}", text(&o.stderr));
    text(&o.stdout)
}

// ---- item 7: signatures ----------------------------------------------------

#[test]
fn unsigned_truncated_and_foreign_packages_are_refused_and_sign_signs() {
    let keys = keys();
    let other = support::gpg::keys();

    let w = tempfile::tempdir().unwrap();
    let repo = w.path().join("repo");
    let good = gen_rpms(&keys, &w.path().join("g"), "g", 1, 1);
    publish_ok(&keys, &repo, &[], &good);
    let before = snapshot(&repo);

    let unsigned = rpmbuild_next(&spec("khf-unsigned", 0, "u"), w.path());
    let foreign = rpmbuild_next(&spec("khf-foreign", 0, "f"), w.path());
    rpmsign(&other, std::slice::from_ref(&foreign));
    let truncated = w.path().join("khf-truncated.rpm");
    let signed = gen_rpms(&keys, &w.path().join("t"), "t", 1, 2).remove(0);
    let bytes = std::fs::read(&signed).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();

    for (p, why) in [
        (&unsigned, "unsigned package"),
        (
            &foreign,
            "signature check against the repository key failed",
        ),
        (
            &truncated,
            "signature check against the repository key failed",
        ),
    ] {
        let name = p.file_name().unwrap().to_str().unwrap();
        // Alone, and after a good package (nothing of the good one is copied either).
        let fresh = gen_rpms(&keys, &w.path().join(format!("f{name}")), "fresh", 1, 3);
        for set in [vec![p.clone()], vec![fresh[0].clone(), p.clone()]] {
            let out = publish(&keys, &repo, &[], &set);
            assert_refused(&out, &before, &repo, &[name, why]);
        }
    }
    // --sign: the unsigned one is signed with the repository key; the
    // foreign and the truncated ones are still refused.
    for p in [&foreign, &truncated] {
        let out = publish(&keys, &repo, &["--sign"], std::slice::from_ref(p));
        assert_refused(
            &out,
            &before,
            &repo,
            &[p.file_name().unwrap().to_str().unwrap()],
        );
    }
    let r = publish_ok(&keys, &repo, &["--sign"], std::slice::from_ref(&unsigned));
    assert_eq!(
        r["added"],
        serde_json::json!(["Packages/khf-unsigned-1.0-1.x86_64.rpm"])
    );
    // The input itself is left alone.
    let k = output(Command::new("rpm").arg("-K").arg(&unsigned));
    assert!(
        text(&k.stdout).trim().ends_with("digests OK"),
        "{}",
        text(&k.stdout)
    );
    assert!(verify_ok(&repo).contains("2 packages"));
    let http = Http::serve(&repo);
    let root = w.path().join("root");
    dnf_ok(
        &http.url(),
        &w.path().join("c"),
        &[
            "--installroot",
            root.to_str().unwrap(),
            "install",
            "khf-unsigned",
        ],
    );
    assert!(root.join("usr/lib/khf/khf-unsigned").is_file());
}

// ---- item 5: same NEVRA, epochs, atomic replace ----------------------------

#[test]
fn same_nevra_with_other_bytes_needs_replace_and_epochs_never_collide() {
    let keys = keys();
    let w = tempfile::tempdir().unwrap();
    let repo = w.path().join("repo");
    let v1 = rpmbuild_next(&spec("khf-same", 0, "first"), w.path());
    let v2 = rpmbuild_next(&spec("khf-same", 0, "second"), w.path());
    rpmsign(&keys, &[v1.clone(), v2.clone()]);
    publish_ok(&keys, &repo, &[], std::slice::from_ref(&v1));
    // Same bytes again: nothing to do.
    let r = publish_ok(&keys, &repo, &[], std::slice::from_ref(&v1));
    assert_eq!(r["added"], serde_json::json!([]));
    // Other bytes: refused, one line naming the input and the NEVRA.
    let before = snapshot(&repo);
    let out = publish(&keys, &repo, &[], std::slice::from_ref(&v2));
    assert_refused(
        &out,
        &before,
        &repo,
        &[
            v2.file_name().unwrap().to_str().unwrap(),
            "khf-same-1.0-1.x86_64",
            "--replace",
        ],
    );
    // Two inputs with the same NEVRA and different bytes: refused too.
    let out = publish(
        &keys,
        &w.path().join("other-repo"),
        &[],
        &[v1.clone(), v2.clone()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(!w.path().join("other-repo").exists());

    // --replace: the new bytes are published under a new name, the old file is gone.
    let r = publish_ok(&keys, &repo, &["--replace"], std::slice::from_ref(&v2));
    assert_eq!(r["packages"], 1);
    assert_eq!(
        r["removed"],
        serde_json::json!(["Packages/khf-same-1.0-1.x86_64.rpm"])
    );
    let added = r["added"][0].as_str().unwrap().to_string();
    assert_ne!(added, "Packages/khf-same-1.0-1.x86_64.rpm");
    assert_eq!(
        std::fs::read(repo.join(&added)).unwrap(),
        std::fs::read(&v2).unwrap()
    );
    verify_ok(&repo);

    // Epochs 0, 1 and 2 of the same name-version-release-arch: three files.
    let e: Vec<PathBuf> = [1, 2]
        .iter()
        .map(|ep| rpmbuild_next(&spec("khf-same", *ep, &format!("epoch {ep}")), w.path()))
        .collect();
    rpmsign(&keys, &e);
    let r = publish_ok(&keys, &repo, &[], &e);
    assert_eq!(r["packages"], 3, "{r}");
    assert!(repo.join("Packages/khf-same-1_1.0-1.x86_64.rpm").is_file());
    assert!(repo.join("Packages/khf-same-2_1.0-1.x86_64.rpm").is_file());
    assert!(verify_ok(&repo).contains("3 packages"));
    let http = Http::serve(&repo);
    let q = dnf_ok(
        &http.url(),
        &w.path().join("c"),
        &["repoquery", "--qf", "%{name} %{epoch} %{version}"],
    );
    let mut lines: Vec<&str> = q.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["khf-same 0 1.0", "khf-same 1 1.0", "khf-same 2 1.0"]
    );
}

#[test]
fn kill_9_during_replace_leaves_a_verifiable_repo() {
    let keys = keys();
    let w = tempfile::tempdir().unwrap();
    let repo = w.path().join("repo");
    let base = gen_rpms(&keys, &w.path().join("base"), "k", 200, 0);
    publish_ok(&keys, &repo, &[], &base);
    let http = Http::serve(&repo);
    let mut x: u64 = 0x9e3779b97f4a7c15 ^ u64::from(std::process::id());
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // How long a cold publish takes here: kill within that window.
    std::fs::remove_dir_all(repo.join(".khotfix-cache")).unwrap();
    let t = Instant::now();
    publish_ok(&keys, &repo, &[], &[]);
    let window = t.elapsed().as_micros().max(20_000) as u64;
    let mut killed = 0;
    let rounds = 12;
    for round in 0..rounds {
        // New bytes for the same five NEVRAs.
        let all = gen_rpms(
            &keys,
            &w.path().join(format!("r{round}")),
            "k",
            5,
            round as u8 + 1,
        );
        if round % 2 == 0 {
            let _ = std::fs::remove_dir_all(repo.join(".khotfix-cache"));
        }
        let mut child = khotfix()
            .args(["publish", "--replace", "--repo"])
            .arg(&repo)
            .arg("--gpg-key")
            .arg(&keys.secret)
            .args(&all)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rand() % window));
        let _ = child.kill();
        if !child.wait().unwrap().success() {
            killed += 1;
        }
        let v = verify_ok(&repo);
        assert!(v.contains("200 packages"), "round {round}: {v}");
        dnf_ok(
            &http.url(),
            &w.path().join(format!("c{round}")),
            &["makecache"],
        );
    }
    assert!(
        killed >= rounds / 2,
        "only {killed} of {rounds} publishes were interrupted"
    );
    // A complete --replace afterwards: one file per NEVRA, the new bytes.
    let last = gen_rpms(&keys, &w.path().join("last"), "k", 5, 0xee);
    publish_ok(&keys, &repo, &["--replace"], &last);
    let v = verify_ok(&repo);
    assert!(v.contains("200 packages"), "{v}");
    let files = std::fs::read_dir(repo.join("Packages")).unwrap().count();
    assert_eq!(files, 200, "duplicates left in Packages/");
    dnf_ok(&http.url(), &w.path().join("cl"), &["makecache"]);
}

// ---- item 6: long file names ----------------------------------------------

#[test]
fn long_kernel_release_package_end_to_end_and_bad_files_do_not_brick() {
    use khotfix::package::{build_rpm, BuildOptions, Compression, PackageInput};
    let w = tempfile::tempdir().unwrap();
    // Keys and a signed module as `khotfix package` uses them.
    let kdir = w.path().join("keys");
    generate_keys(&kdir);
    let module = w.path().join("kpatch-22519882.ko");
    sign_module(&kdir, &module);
    let secret = kdir.join(khotfix::keys::PGP_SECRET_FILE);
    let signer = khotfix::keys::PackageSigner::load(&secret, None).unwrap();
    // A long vendor release (hotfix streams and rebuilds add numeric parts).
    let kver = "5.10.134-18.19.20.21.22.23.24.25.26.27.28.29.30.31.32.33.34.35.36.37.38.39.40.41.42.43.44.45.46.47.an8.x86_64";
    let out = build_rpm(
        &PackageInput {
            hotfix: khotfix::recipe::Hotfix {
                id: 22519882,
                name: "long".into(),
                summary: "long kernel release".into(),
                description: "long kernel release\n".into(),
                version: "1.0".into(),
                changelog: vec![],
            },
            kernel: khotfix::kernel::KernelRelease::parse(kver).unwrap(),
            distro: khotfix::distro::Distro::builtin("alinux3").unwrap(),
            ko_path: module,
            patch: String::new(),
        },
        &signer,
        &w.path().join("out"),
        &BuildOptions {
            compression: Compression::Xz,
            source_date_epoch: Some(1_754_322_514),
        },
    )
    .unwrap();
    let name = out.path.file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.len() > 128, "{} bytes: {name}", name.len());

    let keys = Keys {
        _dir: tempfile::tempdir().unwrap(),
        home: PathBuf::new(),
        secret,
        fpr: String::new(),
    };
    let repo = w.path().join("repo");
    let r = publish_ok(&keys, &repo, &[], std::slice::from_ref(&out.path));
    // An al8 package goes to the al8 part of the repository.
    assert_eq!(
        r["added"],
        serde_json::json!([format!("al8/Packages/{name}")])
    );
    verify_ok(&repo);
    // Later publishes keep working.
    let r = publish_ok(&keys, &repo, &[], &[]);
    assert_eq!(r["packages"], 1);

    // dnf reads it from the signed repository over HTTP (gpgcheck and
    // repo_gpgcheck on); repo verify above checked its bytes and signature.
    let http = Http::serve(&repo);
    let part = format!("{}al8/", http.url());
    let query = |args: &[&str]| {
        let o = dnf_at(&part, &http.url(), &w.path().join("c"), args);
        assert!(o.status.success(), "dnf {args:?}: {}", text(&o.stderr));
        text(&o.stdout)
    };
    let q = query(&["repoquery", "--qf", "%{name}"]);
    assert_eq!(q.trim(), out.name);
    let loc = query(&["repoquery", "--location", &out.name]);
    assert_eq!(loc.trim(), format!("{part}Packages/{name}"));

    // Bad files already in Packages/ are skipped with one warning line each,
    // never fatal: a name longer than NAME_MAX cannot exist, so a bad
    // character, a non-file and an unreadable package stand in.
    let pk = repo.join("al8/Packages");
    std::fs::write(pk.join("junk.rpm"), b"not an rpm").unwrap();
    std::fs::copy(&out.path, pk.join("bad name.rpm")).unwrap();
    std::fs::create_dir(pk.join("dir.rpm")).unwrap();
    let o = publish(&keys, &repo, &["--json"], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    for n in ["junk.rpm", "bad name.rpm", "dir.rpm"] {
        assert_eq!(
            err.lines()
                .filter(|l| l.contains(n) && l.contains("warning"))
                .count(),
            1,
            "{n}: {err}"
        );
    }
    assert_eq!(err.lines().count(), 3, "{err}");
    assert!(verify_ok(&repo).contains("1 packages"));
}

#[test]
fn file_name_over_name_max_is_refused_before_copying() {
    let keys = keys();
    let w = tempfile::tempdir().unwrap();
    let repo = w.path().join("repo");
    publish_ok(
        &keys,
        &repo,
        &[],
        &gen_rpms(&keys, &w.path().join("g"), "g", 1, 1),
    );
    let before = snapshot(&repo);
    // Name, version and release within 128 each; together over 255.
    let signer = rpm::signature::pgp::Signer::from_asc_file(&keys.secret).unwrap();
    let mut b =
        rpm::PackageBuilder::new(&"n".repeat(120), &"1".repeat(100), "MIT", "x86_64", "long");
    b.release("r".repeat(60));
    let p = w.path().join("long.rpm");
    b.build_and_sign(&signer).unwrap().write_file(&p).unwrap();
    let out = publish(&keys, &repo, &[], std::slice::from_ref(&p));
    assert_refused(
        &out,
        &before,
        &repo,
        &["long.rpm", "longer than the file system's 255"],
    );
}

// ---- item 13: symlinks inside the repository --------------------------------

#[test]
fn symlinks_in_the_repository_are_refused() {
    let keys = keys();
    let w = tempfile::tempdir().unwrap();
    let rpms = gen_rpms(&keys, &w.path().join("g"), "g", 1, 1);
    let template = w.path().join("template");
    publish_ok(&keys, &template, &[], &[]);
    let outside = w.path().join("outside");
    for (i, name) in [
        "Packages",
        ".khotfix.lock",
        ".khotfix-cache",
        "RPM-GPG-KEY-khotfix",
        "khotfix.repo",
        ".repodata-1",
        "repodata",
    ]
    .iter()
    .enumerate()
    {
        let repo = w.path().join(format!("repo{i}"));
        ok(Command::new("cp").arg("-a").arg(&template).arg(&repo));
        let _ = std::fs::remove_dir_all(&outside);
        std::fs::create_dir(&outside).unwrap();
        let target = if name.starts_with('.') && !name.starts_with(".repodata") {
            outside.join("x")
        } else {
            outside.clone()
        };
        let l = repo.join(name);
        if std::fs::symlink_metadata(&l).is_ok_and(|m| m.is_dir()) {
            std::fs::remove_dir_all(&l).unwrap();
        } else {
            let _ = std::fs::remove_file(&l);
        }
        std::os::unix::fs::symlink(&target, &l).unwrap();
        let before = snapshot(&repo);
        let out = publish(&keys, &repo, &[], &rpms);
        assert_refused(&out, &before, &repo, &[name, "symlink"]);
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "{name}: something was written outside the repository"
        );
    }
}

/// A repository published to before is locked and read while the inputs are
/// checked (issue 17): that read must neither remove a crashed publisher's
/// leftovers nor print warnings before bad inputs are refused.
#[test]
fn bad_input_leaves_leftovers_and_prints_one_line() {
    let keys = keys();
    let w = tempfile::tempdir().unwrap();
    let repo = w.path().join("repo");
    let v1 = rpmbuild_next(&spec("khf-left", 0, "first"), w.path());
    rpmsign(&keys, std::slice::from_ref(&v1));
    publish_ok(&keys, &repo, &[], std::slice::from_ref(&v1));
    std::fs::create_dir(repo.join(".repodata.tmp-1-2")).unwrap();
    std::fs::write(repo.join(".repodata.tmp-1-2/primary.xml.gz"), b"x").unwrap();
    std::fs::write(repo.join("Packages/.khotfix-tmp-abc"), b"partial").unwrap();
    std::fs::write(repo.join("Packages/bad name.rpm"), b"skipped").unwrap();
    let junk = w.path().join("junk.rpm");
    std::fs::write(&junk, b"not an rpm").unwrap();
    let before = snapshot(&repo);
    let out = publish(&keys, &repo, &[], std::slice::from_ref(&junk));
    assert_refused(&out, &before, &repo, &["junk.rpm"]);
    // A good publish then tidies up and warns about the skipped file.
    let v2 = rpmbuild_next(&spec("khf-left2", 0, "second"), w.path());
    rpmsign(&keys, std::slice::from_ref(&v2));
    let out = publish(&keys, &repo, &[], std::slice::from_ref(&v2));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("bad name.rpm"),
        "{}",
        text(&out.stderr)
    );
    assert!(!repo.join(".repodata.tmp-1-2").exists());
    assert!(!repo.join("Packages/.khotfix-tmp-abc").exists());
}
