//! Debian family through the machine's real apt: ABI discovery, `apt-get
//! download` (reaches the configured mirror), SHA256 from `apt-cache show`,
//! `dpkg-deb -x` into the cache. Headers and kbuild only (no linux-image).

use khotfix::distro::Distro;
use khotfix::fetch::{self, apt, Cache, FetchOptions, FetchedKernel, Role};

#[test]
fn debian_headers_are_fetched_verified_and_unpacked() {
    let distro = Distro::builtin("debian12").unwrap();
    let k = apt::current_kernel(distro.apt_metapackage.as_deref().unwrap()).unwrap();
    assert_eq!(k.flavor, khotfix::kernel::Flavor::Debian);
    assert_eq!(
        fetch::published_kernels(&distro, &FetchOptions::default()).unwrap(),
        vec![k.clone()]
    );

    let tmp = tempfile::tempdir().unwrap();
    let opts = FetchOptions {
        cache_dir: Some(tmp.path().to_path_buf()),
        deb_image: false,
        ..FetchOptions::default()
    };
    let got = fetch::fetch_kernel(&k, &distro, &opts).unwrap();
    let FetchedKernel::Deb(d) = &got else {
        panic!("deb family expected")
    };
    let roles: Vec<Role> = d.files.iter().map(|f| f.role).collect();
    assert_eq!(roles, [Role::Headers, Role::HeadersCommon, Role::Kbuild]);
    for f in &d.files {
        // What apt recorded is what the cache holds.
        let (name, version) = f.package.split_once('=').unwrap();
        let shown = apt::show(None, name, Some(version)).unwrap();
        assert_eq!(f.checksum, shown.sha256.to_string());
        // The memo's answer (remembered by the fetch above) is apt's.
        let memo = khotfix::util::memo::Memo::new(tmp.path().join("memo"));
        let remembered = apt::show(Some(&memo), name, Some(version)).unwrap();
        assert_eq!(
            (remembered.sha256.to_string(), remembered.size),
            (shown.sha256.to_string(), shown.size)
        );
        assert_eq!(std::fs::metadata(&f.path).unwrap().len(), shown.size);
        assert!(!f.cached);
    }
    let cache = Cache::open(tmp.path()).unwrap();
    assert!(cache.verify_all().unwrap().is_empty());

    // A usable kbuild tree: the flavour headers' symlinks into -common and
    // linux-kbuild resolve inside the merged root.
    assert!(d
        .headers_dir
        .ends_with(format!("usr/src/linux-headers-{k}")));
    assert!(d.headers_dir.join("Makefile").is_file());
    assert!(d.headers_dir.join(".config").is_file());
    assert!(d
        .headers_dir
        .join("scripts")
        .canonicalize()
        .unwrap()
        .starts_with(d.root.canonicalize().unwrap()));
    assert!(
        d.headers_dir.join("include/linux/kernel.h").is_file()
            || d.headers_dir.join("include").is_dir()
    );
    assert!(d.vmlinuz.is_none());
    // Second run: from the cache, same tree.
    let again = fetch::fetch_kernel(&k, &distro, &opts).unwrap();
    let FetchedKernel::Deb(d2) = again else {
        panic!()
    };
    assert!(d2.files.iter().all(|f| f.cached));
    assert_eq!(d2.root, d.root);
}

#[test]
fn unknown_debian_abi_is_a_clear_error() {
    let distro = Distro::builtin("debian12").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let opts = FetchOptions {
        cache_dir: Some(tmp.path().to_path_buf()),
        deb_image: false,
        ..FetchOptions::default()
    };
    let k = khotfix::kernel::KernelRelease::parse("6.1.0-1-amd64").unwrap();
    let msg = format!("{:#}", fetch::fetch_kernel(&k, &distro, &opts).unwrap_err());
    assert!(
        msg.contains("linux-headers-6.1.0-1-amd64")
            && msg.contains("not available from this machine's apt sources"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
}
