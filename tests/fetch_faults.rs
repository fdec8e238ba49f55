//! Network and metadata faults, injected by the test server: each must end
//! in either a verified file or a clear one-line error, and never in an
//! unverified file in the cache.

mod support;

use khotfix::fetch::{self, Cache, FetchOptions};
use khotfix::kernel::KernelRelease;
use std::path::Path;
use std::time::Duration;
use support::http::{Fault, Server};
use support::kernel_rpms as rpms;

const DEVEL: &str = "kernel-devel-5.10.134-18.al8.x86_64.rpm";

struct Env {
    tmp: tempfile::TempDir,
    srv: Server,
}

impl Env {
    fn new(compress: &str) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        rpms::make_repos(&tmp.path().join("www"), compress);
        let srv = Server::start(&tmp.path().join("www"));
        Env { tmp, srv }
    }
    fn www(&self) -> std::path::PathBuf {
        self.tmp.path().join("www")
    }
    fn cache_dir(&self) -> std::path::PathBuf {
        self.tmp.path().join("cache")
    }
    fn opts(&self) -> FetchOptions {
        let mut o = FetchOptions {
            cache_dir: Some(self.cache_dir()),
            ..FetchOptions::default()
        };
        o.http.timeout = Duration::from_secs(5);
        o.http.backoff = Duration::from_millis(10);
        o.http.retries = 3;
        o
    }
    fn fetch(&self, o: &FetchOptions) -> anyhow::Result<fetch::FetchedKernel> {
        let d = rpms::test_distro(&self.srv.url());
        fetch::fetch_kernel(&KernelRelease::parse(rpms::BIG_KERNEL).unwrap(), &d, o)
    }
    fn cache(&self) -> Cache {
        Cache::open(&self.cache_dir()).unwrap()
    }
    /// Only verified files in the cache, and `name` among them or not.
    fn cache_holds(&self, name: &str) -> bool {
        let c = self.cache();
        assert!(
            c.verify_all().unwrap().is_empty(),
            "cache holds a file whose content does not match its digest"
        );
        c.objects().unwrap().iter().any(|p| p.ends_with(name))
    }
}

fn devel_bytes() -> Vec<u8> {
    std::fs::read(rpms::rpm_path(DEVEL)).unwrap()
}

fn devel_path(k: &fetch::FetchedKernel) -> &Path {
    match k {
        fetch::FetchedKernel::Rpm(r) => &r.devel_rpm,
        _ => panic!("rpm expected"),
    }
}

#[test]
fn not_found_fails_over_to_the_next_mirror_and_names_every_url_when_all_fail() {
    let env = Env::new("gz");
    let mut d = rpms::test_distro(&env.srv.url());
    for r in d.repos.iter_mut() {
        // First mirror serves nothing at all.
        r.mirrors
            .insert(0, format!("{}nothing-here/", env.srv.url()));
    }
    let k = KernelRelease::parse(rpms::BIG_KERNEL).unwrap();
    let got = fetch::fetch_kernel(&k, &d, &env.opts()).unwrap();
    assert_eq!(std::fs::read(devel_path(&got)).unwrap(), devel_bytes());
    assert!(env
        .srv
        .requests_for("nothing-here/")
        .iter()
        .all(|r| r.status == 404));
    assert!(!env.srv.requests_for("nothing-here/").is_empty());

    // The package itself missing on both mirrors: one line naming both URLs.
    let env = Env::new("gz");
    env.srv.fault(DEVEL, Fault::NotFound, None);
    let mut d = rpms::test_distro(&env.srv.url());
    for r in d.repos.iter_mut() {
        r.mirrors.push(r.mirrors[0].clone());
    }
    let e = fetch::fetch_kernel(&k, &d, &env.opts()).unwrap_err();
    let msg = format!("{e:#}");
    assert!(!msg.contains('\n'));
    assert!(
        msg.contains("every mirror failed") && msg.matches("HTTP 404").count() == 2,
        "{msg}"
    );
    assert!(
        msg.contains(&format!("{}os/Packages/{DEVEL}", env.srv.url())),
        "{msg}"
    );
    // 404 is not retried on the same mirror.
    assert_eq!(env.srv.requests_for(DEVEL).len(), 2);
    assert!(!env.cache_holds(DEVEL));
}

#[test]
fn server_error_then_success_is_retried() {
    let env = Env::new("gz");
    env.srv.fault(DEVEL, Fault::Status(500), Some(2));
    let got = env.fetch(&env.opts()).unwrap();
    assert_eq!(std::fs::read(devel_path(&got)).unwrap(), devel_bytes());
    let statuses: Vec<u16> = env
        .srv
        .requests_for(DEVEL)
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [500, 500, 200]);

    // Out of retries: the error says what the server said.
    let env = Env::new("gz");
    env.srv.fault(DEVEL, Fault::Status(503), None);
    let mut o = env.opts();
    o.http.retries = 1;
    let msg = format!("{:#}", env.fetch(&o).unwrap_err());
    assert!(msg.contains(DEVEL) && msg.contains("HTTP 503"), "{msg}");
    assert_eq!(env.srv.requests_for(DEVEL).len(), 2);
}

#[test]
fn dropped_connection_resumes_with_range_and_verifies() {
    let env = Env::new("gz");
    env.srv.fault(DEVEL, Fault::DropAfter(1 << 20), Some(1));
    let got = env.fetch(&env.opts()).unwrap();
    assert_eq!(std::fs::read(devel_path(&got)).unwrap(), devel_bytes());
    let reqs = env.srv.requests_for(DEVEL);
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].range, None);
    let r = reqs[1]
        .range
        .clone()
        .expect("second request must resume with Range");
    let from: u64 = r
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(from > 0 && from <= 1 << 20, "{r}");
    assert_eq!(reqs[1].status, 206);
    assert!(env.cache_holds(DEVEL));
    // Nothing left in the partial area.
    let partial: Vec<_> = std::fs::read_dir(env.cache_dir().join("partial"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(partial.is_empty());
}

#[test]
fn server_ignoring_range_restarts_from_zero() {
    let env = Env::new("gz");
    env.srv.fault(DEVEL, Fault::DropAfter(1 << 20), Some(1));
    env.srv.fault(DEVEL, Fault::IgnoreRange, None);
    let got = env.fetch(&env.opts()).unwrap();
    assert_eq!(std::fs::read(devel_path(&got)).unwrap(), devel_bytes());
    let reqs = env.srv.requests_for(DEVEL);
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].range.is_some());
    assert_eq!(
        reqs[1].status, 200,
        "server answered the resume with the whole file"
    );
}

#[test]
fn corrupted_body_is_a_checksum_error_and_never_cached() {
    let env = Env::new("gz");
    env.srv.fault(DEVEL, Fault::Corrupt, None);
    let msg = format!("{:#}", env.fetch(&env.opts()).unwrap_err());
    let expected = rpms::sha256_of(&rpms::rpm_path(DEVEL));
    let url = format!("{}os/Packages/{DEVEL}", env.srv.url());
    assert!(
        msg.contains(&format!(
            "checksum mismatch for {url}: expected sha256:{expected}, got sha256:"
        )),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    assert!(!env.cache_holds(DEVEL));
    assert!(!env
        .cache_dir()
        .join("partial")
        .join(format!("sha256-{expected}.part"))
        .exists());
    // The other three packages verified and are cached.
    assert!(env.cache_holds("kernel-5.10.134-18.al8.src.rpm"));

    // Corruption that appears only in a resumed part: one clean restart fixes it.
    let env = Env::new("gz");
    env.srv.fault(DEVEL, Fault::DropAfter(1 << 20), Some(1));
    env.srv.fault(DEVEL, Fault::Corrupt, Some(1));
    let got = env.fetch(&env.opts()).unwrap();
    assert_eq!(std::fs::read(devel_path(&got)).unwrap(), devel_bytes());
    assert_eq!(env.srv.requests_for(DEVEL).len(), 3);
}

#[test]
fn stalled_server_times_out_with_a_clear_message() {
    let env = Env::new("gz");
    env.srv.fault(DEVEL, Fault::Stall { ms: 3000 }, None);
    let mut o = env.opts();
    o.http.timeout = Duration::from_millis(400);
    o.http.retries = 0;
    let t = std::time::Instant::now();
    let msg = format!("{:#}", env.fetch(&o).unwrap_err());
    assert!(
        msg.contains(&format!("{}os/Packages/{DEVEL}", env.srv.url())),
        "{msg}"
    );
    assert!(
        msg.contains("timeout") && msg.contains("0.4s") && msg.contains("KHOTFIX_HTTP_TIMEOUT"),
        "{msg}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "gave up only after {:?}",
        t.elapsed()
    );
    assert!(!env.cache_holds(DEVEL));

    // Slow but steady is not a timeout.
    let env = Env::new("gz");
    env.srv.fault(
        DEVEL,
        Fault::Slow {
            chunk: 256 << 10,
            delay_ms: 100,
        },
        None,
    );
    let mut o = env.opts();
    o.http.timeout = Duration::from_millis(400);
    let got = env.fetch(&o).unwrap();
    assert_eq!(std::fs::read(devel_path(&got)).unwrap(), devel_bytes());
}

#[test]
fn repomd_pointing_at_a_missing_primary() {
    let env = Env::new("gz");
    let os = env.www().join("os");
    let (primary, _) = rpms::primary_of(&os);
    std::fs::remove_file(&primary).unwrap();
    let d = rpms::test_distro(&env.srv.url());
    let msg = format!(
        "{:#}",
        fetch::published_kernels(&d, &env.opts()).unwrap_err()
    );
    assert!(
        msg.contains("repository plus") && msg.contains("HTTP 404"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("{}os/repodata/", env.srv.url())) && msg.contains("primary.xml.gz"),
        "{msg}"
    );
}

#[test]
fn malformed_metadata_is_one_line_naming_the_url() {
    // Truncated primary (consistent checksums, broken XML).
    let env = Env::new("gz");
    rpms::rewrite_primary(&env.www().join("os"), |x| x[..x.len() / 2].to_string());
    let d = rpms::test_distro(&env.srv.url());
    let msg = format!(
        "{:#}",
        fetch::published_kernels(&d, &env.opts()).unwrap_err()
    );
    assert!(
        msg.contains(&format!(
            "malformed primary metadata at {}os/repodata/edited-primary.xml.gz",
            env.srv.url()
        )),
        "{msg}"
    );
    assert!(!msg.contains('\n'));

    // Garbage repomd.xml.
    let env = Env::new("gz");
    std::fs::write(
        env.www().join("debug/repodata/repomd.xml"),
        "<repomd><data type=\"primary\"><location href=\"x\"",
    )
    .unwrap();
    let d = rpms::test_distro(&env.srv.url());
    let msg = format!(
        "{:#}",
        fetch::published_kernels(&d, &env.opts()).unwrap_err()
    );
    assert!(
        msg.contains(&format!(
            "malformed repomd.xml at {}debug/repodata/repomd.xml",
            env.srv.url()
        )),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
}

#[test]
fn package_location_with_dotdot_is_refused() {
    let env = Env::new("gz");
    rpms::rewrite_primary(&env.www().join("os"), |x| {
        x.replace(
            &format!("href=\"Packages/{DEVEL}\""),
            &format!("href=\"../../Packages/{DEVEL}\""),
        )
    });
    let msg = format!("{:#}", env.fetch(&env.opts()).unwrap_err());
    assert!(
        msg.contains("'..'") && msg.contains("refused") && msg.contains("edited-primary.xml.gz"),
        "{msg}"
    );
    assert!(
        env.srv.requests_for(DEVEL).is_empty(),
        "nothing may be requested for a refused location"
    );

    let env = Env::new("gz");
    rpms::rewrite_primary(&env.www().join("os"), |x| {
        x.replace(
            &format!("href=\"Packages/{DEVEL}\""),
            "href=\"/etc/passwd\"",
        )
    });
    let msg = format!("{:#}", env.fetch(&env.opts()).unwrap_err());
    assert!(msg.contains("absolute") && msg.contains("refused"), "{msg}");
}

#[test]
fn complete_part_from_an_interrupted_run_is_verified_without_a_request() {
    let env = Env::new("gz");
    let sum = rpms::sha256_of(&rpms::rpm_path(DEVEL));
    let part = env
        .cache_dir()
        .join("partial")
        .join(format!("sha256-{sum}.part"));
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    std::fs::write(&part, devel_bytes()).unwrap();
    let got = env.fetch(&env.opts()).unwrap();
    assert_eq!(std::fs::read(devel_path(&got)).unwrap(), devel_bytes());
    assert!(env.srv.requests_for(DEVEL).is_empty());

    // A complete-length part with wrong bytes is thrown away and downloaded again.
    let env = Env::new("gz");
    let mut bad = devel_bytes();
    bad[10] ^= 1;
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    let part = env
        .cache_dir()
        .join("partial")
        .join(format!("sha256-{sum}.part"));
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    std::fs::write(&part, bad).unwrap();
    let got = env.fetch(&env.opts()).unwrap();
    assert_eq!(std::fs::read(devel_path(&got)).unwrap(), devel_bytes());
    assert_eq!(env.srv.requests_for(DEVEL).len(), 1);
    assert!(env.cache_holds(DEVEL));
}
