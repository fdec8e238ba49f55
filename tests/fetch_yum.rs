//! The yum client against real repositories (rpmbuild + createrepo_c) served
//! over real HTTP on 127.0.0.1.

mod support;

use khotfix::fetch::{self, Cache, FetchOptions, FetchedKernel};
use khotfix::kernel::KernelRelease;
use std::time::Duration;
use support::http::Server;
use support::kernel_rpms as rpms;

fn opts(cache: &std::path::Path) -> FetchOptions {
    let mut o = FetchOptions {
        cache_dir: Some(cache.to_path_buf()),
        ..FetchOptions::default()
    };
    o.http.timeout = Duration::from_secs(5);
    o.http.backoff = Duration::from_millis(10);
    o.http.retries = 2;
    o
}

fn k(s: &str) -> KernelRelease {
    KernelRelease::parse(s).unwrap()
}

#[test]
fn lists_kernels_and_fetches_the_four_packages_verified() {
    let tmp = tempfile::tempdir().unwrap();
    rpms::make_repos(&tmp.path().join("www"), "gz");
    let srv = Server::start(&tmp.path().join("www"));
    let distro = rpms::test_distro(&srv.url());
    let o = opts(&tmp.path().join("cache"));

    let ks = fetch::published_kernels(&distro, &o).unwrap();
    let names: Vec<&str> = ks.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        ["5.10.134-18.al8.x86_64", "5.10.134-19.1.al8.x86_64"]
    );

    let got = fetch::fetch_kernel(&k("5.10.134-19.1.al8.x86_64"), &distro, &o).unwrap();
    let FetchedKernel::Rpm(r) = &got else {
        panic!("rpm family expected")
    };
    assert!(
        r.source_rpm.ends_with("kernel-5.10.134-19.1.al8.src.rpm"),
        "{}",
        r.source_rpm.display()
    );
    assert!(r
        .debuginfo_rpm
        .ends_with("kernel-debuginfo-5.10.134-19.1.al8.x86_64.rpm"));
    assert!(r
        .debuginfo_common_rpm
        .ends_with("kernel-debuginfo-common-x86_64-5.10.134-19.1.al8.x86_64.rpm"));
    assert!(r
        .devel_rpm
        .ends_with("kernel-devel-5.10.134-19.1.al8.x86_64.rpm"));
    for f in &r.files {
        let name = f.path.file_name().unwrap().to_str().unwrap();
        let original = rpms::rpm_path(name);
        assert_eq!(
            std::fs::read(&f.path).unwrap(),
            std::fs::read(&original).unwrap(),
            "{name} differs from what was built"
        );
        assert_eq!(f.checksum, format!("sha256:{}", rpms::sha256_of(&original)));
        assert!(!f.cached);
        assert!(f.source.starts_with(&srv.url()), "{}", f.source);
    }
    let cache = Cache::open(&tmp.path().join("cache")).unwrap();
    assert!(cache.verify_all().unwrap().is_empty());

    // Second run: everything from the cache, and the unchanged repomd means
    // no primary download either.
    srv.clear_log();
    let again = fetch::fetch_kernel(&k("5.10.134-19.1.al8.x86_64"), &distro, &o).unwrap();
    assert!(again.files().iter().all(|f| f.cached));
    let reqs = srv.requests();
    assert!(
        reqs.iter().all(|r| r.path.ends_with("repomd.xml")),
        "unexpected requests: {reqs:?}"
    );
}

#[test]
fn primary_in_xz_and_zstd_and_metadata_refresh() {
    for compress in ["xz", "zstd"] {
        let tmp = tempfile::tempdir().unwrap();
        let www = tmp.path().join("www");
        rpms::make_repos(&www, compress);
        let (primary, _) = rpms::primary_of(&www.join("os"));
        let ext = if compress == "xz" { "xz" } else { "zst" };
        assert!(
            primary
                .to_string_lossy()
                .ends_with(&format!("primary.xml.{ext}")),
            "{}",
            primary.display()
        );
        let srv = Server::start(&www);
        let distro = rpms::test_distro(&srv.url());
        let o = opts(&tmp.path().join("cache"));
        assert_eq!(
            fetch::published_kernels(&distro, &o).unwrap().len(),
            2,
            "{compress}"
        );

        // The vendor drops 18 from the devel repo: a new repomd, so the
        // listing is refreshed, not served from the old parsed cache.
        for e in std::fs::read_dir(www.join("os/Packages")).unwrap() {
            let e = e.unwrap();
            if e.file_name().to_string_lossy().contains("-18.al8") {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        for sub in ["os", "debug", "source"] {
            let _ = std::fs::remove_dir_all(www.join(sub).join("repodata"));
            if sub != "os" {
                for e in std::fs::read_dir(www.join(sub).join("Packages")).unwrap() {
                    let e = e.unwrap();
                    if e.file_name().to_string_lossy().contains("-18.al8") {
                        std::fs::remove_file(e.path()).unwrap();
                    }
                }
            }
            rpms::createrepo(&www.join(sub), compress);
        }
        let ks = fetch::published_kernels(&distro, &o).unwrap();
        assert_eq!(
            ks.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["5.10.134-19.1.al8.x86_64"],
            "{compress}"
        );
    }
}

#[test]
fn direct_source_repository_without_repodata() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    rpms::make_repos(&www, "gz");
    // A plain directory of SRPMs, as some mirrors publish kernels/.
    let plain = www.join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    for e in std::fs::read_dir(www.join("source/Packages")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), plain.join(e.file_name())).unwrap();
    }
    let srv = Server::start(&www);
    let mut distro = rpms::test_distro(&srv.url());
    let src = distro
        .repos
        .iter_mut()
        .find(|r| r.kind == khotfix::distro::RepoKind::Source)
        .unwrap();
    src.direct = true;
    src.mirrors = vec![format!("{}plain/", srv.url())];
    let o = opts(&tmp.path().join("cache"));

    // Listing skips the direct repository (it has nothing to list).
    assert_eq!(fetch::published_kernels(&distro, &o).unwrap().len(), 2);
    let got = fetch::fetch_kernel(&k("5.10.134-19.1.al8.x86_64"), &distro, &o).unwrap();
    let FetchedKernel::Rpm(r) = got else { panic!() };
    let orig = rpms::rpm_path("kernel-5.10.134-19.1.al8.src.rpm");
    assert_eq!(
        std::fs::read(&r.source_rpm).unwrap(),
        std::fs::read(orig).unwrap()
    );
    assert!(srv
        .requests_for("plain/kernel-5.10.134-19.1.al8.src.rpm")
        .iter()
        .any(|r| r.status == 200));

    // A damaged file on the direct mirror fails the RPM's own digests.
    let bad = plain.join("kernel-5.10.134-18.al8.src.rpm");
    let mut bytes = std::fs::read(&bad).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0x55;
    std::fs::write(&bad, bytes).unwrap();
    let e = fetch::fetch_kernel(&k("5.10.134-18.al8.x86_64"), &distro, &o).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("plain/kernel-5.10.134-18.al8.src.rpm") && msg.contains("digest"),
        "{msg}"
    );
    let cache = Cache::open(&tmp.path().join("cache")).unwrap();
    assert!(!cache
        .objects()
        .unwrap()
        .iter()
        .any(|p| p.ends_with("kernel-5.10.134-18.al8.src.rpm")));
}

#[test]
fn unknown_kernel_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    rpms::make_repos(&tmp.path().join("www"), "gz");
    let srv = Server::start(&tmp.path().join("www"));
    let distro = rpms::test_distro(&srv.url());
    let e = fetch::fetch_kernel(
        &k("5.10.134-17.al8.x86_64"),
        &distro,
        &opts(&tmp.path().join("c")),
    )
    .unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("kernel-5.10.134-17.al8.src is not in the source repositories of alinux3"),
        "{msg}"
    );
    let e = fetch::fetch_kernel(
        &k("3.10.0-1062.el7.x86_64"),
        &distro,
        &opts(&tmp.path().join("c")),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("does not belong to distro alinux3"),
        "{e}"
    );
}
