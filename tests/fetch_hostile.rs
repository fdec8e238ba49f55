//! Issue 16 items 10 and 11: hostile mirrors. Decompression bombs (gzip, xz,
//! zstd; checksums correct in repomd.xml) and slow-drip servers must end
//! `khotfix kernels` / `khotfix download` with exit 2 and one line, in
//! bounded memory and bounded time. Served by the real test HTTP server;
//! repositories made by createrepo_c, then the primary replaced.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::bin::khotfix_fetch;
use support::http::{Fault, Server};
use support::kernel_rpms as rpms;
use support::kernel_rpms::mirrors;

/// Peak RSS any run here may reach (the bombs expand to 10 GiB).
const RSS_LIMIT_KB: i64 = 300 * 1024;

/// Exit code, stderr and peak RSS (KiB) of `cmd`, from wait4(2) on the
/// child itself (not the test process or other tests' children).
fn run_measured(mut cmd: Command) -> (i32, String, i64) {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    // Reaped by wait4 below (Child::wait would lose the rusage).
    #[allow(clippy::zombie_processes)]
    let mut child = cmd.spawn().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter; the pid is our child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    assert_eq!(rc, child.id() as i32, "wait4");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    (code, reader.join().unwrap(), ru.ru_maxrss)
}

/// The same compressed member `n` times: every format here decodes
/// concatenated members/streams/frames, so `n` MiB of output cost only `n`
/// small members on the wire.
fn members(compress: &str, plain: &[u8], n: usize) -> Vec<u8> {
    let one = compress_one(compress, plain);
    let mut out = Vec::with_capacity(one.len() * n);
    for _ in 0..n {
        out.extend_from_slice(&one);
    }
    out
}

fn compress_one(compress: &str, plain: &[u8]) -> Vec<u8> {
    match compress {
        "gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(plain).unwrap();
            e.finish().unwrap()
        }
        "xz" => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 9);
            e.write_all(plain).unwrap();
            e.finish().unwrap()
        }
        "zst" => zstd::encode_all(plain, 19).unwrap(),
        other => panic!("{other}"),
    }
}

const HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metadata xmlns=\"http://linux.duke.edu/metadata/common\" xmlns:rpm=\"http://linux.duke.edu/metadata/rpm\" packages=\"1\">\n";

/// The bomb shapes: what 10 GiB of decompressed primary.xml looks like.
fn bomb(compress: &str, shape: &str) -> Vec<u8> {
    const MIB: usize = 1 << 20;
    let (head, body): (String, Vec<u8>) = match shape {
        // One text node that never ends.
        "text" => (
            format!("{HEAD}<package type=\"rpm\"><name>"),
            vec![b'a'; MIB],
        ),
        // One start tag whose attribute list never ends.
        "attr" => (
            format!("{HEAD}<package type=\"rpm\" "),
            b"x=\"1\" ".repeat(MIB / 6),
        ),
        // Well-formed packages that are not kernels: nothing is kept, so
        // only the decompressed-size limit stops it.
        "packages" => {
            let pkg = "<package type=\"rpm\"><name>bash</name><arch>x86_64</arch><version epoch=\"0\" ver=\"5\" rel=\"1\"/><checksum type=\"sha256\" pkgid=\"YES\">0000000000000000000000000000000000000000000000000000000000000000</checksum><location href=\"Packages/bash-5-1.x86_64.rpm\"/></package>\n";
            (HEAD.to_string(), pkg.repeat(MIB / pkg.len()).into_bytes())
        }
        other => panic!("{other}"),
    };
    let mut out = compress_one(compress, head.as_bytes());
    out.extend(members(compress, &body, 10 * 1024));
    out
}

/// Replace the `os` repository's primary with `bytes`; repomd.xml gets the
/// right checksum and size (the attack is what the data expands to).
fn install_primary(repo: &Path, bytes: &[u8], ext: &str) {
    use sha2::Digest;
    let href = format!("repodata/bomb-primary.xml.{ext}");
    std::fs::write(repo.join(&href), bytes).unwrap();
    rpms::set_primary_entry(
        repo,
        &format!(
            "<data type=\"primary\"><checksum type=\"sha256\">{}</checksum><location href=\"{href}\"/><size>{}</size></data>",
            hex::encode(sha2::Sha256::digest(bytes)),
            bytes.len()
        ),
    );
}

fn kernels(srv: &Server, cache: &Path) -> Command {
    let mut c = khotfix_fetch();
    c.args(["kernels", "--distro", "alinux3", "--quiet", "--cache-dir"])
        .arg(cache);
    for m in mirrors(srv) {
        c.args(["--mirror", &m]);
    }
    c
}

#[test]
fn decompression_bombs_fail_with_one_line_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    rpms::make_repos(&www, "gz");
    let srv = Server::start(&www);
    let cases = [
        ("gz", "text", None, "XML node is longer than"),
        ("xz", "attr", None, "XML node is longer than"),
        ("zst", "text", None, "XML node is longer than"),
        // The size limit at a test-sized value (the default is 2 GiB).
        ("gz", "packages", Some("67108864"), "exceeds 67108864 bytes"),
        (
            "zst",
            "packages",
            Some("67108864"),
            "exceeds 67108864 bytes",
        ),
    ];
    for (i, (ext, shape, max, want)) in cases.into_iter().enumerate() {
        let b = bomb(ext, shape);
        install_primary(&www.join("os"), &b, ext);
        let mut c = kernels(&srv, &tmp.path().join(format!("c{i}")));
        if let Some(m) = max {
            c.env("KHOTFIX_METADATA_MAX_BYTES", m);
        }
        let (code, err, rss) = run_measured(c);
        let what = format!("{shape} bomb ({} KiB of {ext})", b.len() / 1024);
        assert_eq!(code, 2, "{what}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
        assert!(err.contains(want), "{what}: {err}");
        assert!(
            err.contains("bomb-primary.xml"),
            "{what}: names the file: {err}"
        );
        assert!(
            rss < RSS_LIMIT_KB,
            "{what}: peak RSS {rss} KiB over {RSS_LIMIT_KB} KiB"
        );
        eprintln!("{what}: exit {code}, peak RSS {rss} KiB: {}", err.trim());
    }
    // A bad limit value is refused, one line.
    let mut c = kernels(&srv, &tmp.path().join("cx"));
    c.env("KHOTFIX_METADATA_MAX_BYTES", "lots");
    let (code, err, _) = run_measured(c);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("KHOTFIX_METADATA_MAX_BYTES"), "{err}");
}

#[test]
fn slow_drip_servers_time_out() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    rpms::make_repos(&www, "gz");
    let srv = Server::start(&www);
    // A byte a second, for every file (repomd.xml included).
    srv.fault(
        "/",
        Fault::Slow {
            chunk: 1,
            delay_ms: 1000,
        },
        None,
    );
    // `kernels`: repomd.xml drips.
    let t = Instant::now();
    let mut c = kernels(&srv, &tmp.path().join("c1"));
    c.args(["--timeout", "2"]);
    let (code, err, _) = run_measured(c);
    let took = t.elapsed();
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("too slow") && err.contains("repomd.xml"),
        "{err}"
    );
    // Bounded, not timed: the old behaviour ran for ever.
    assert!(took < Duration::from_secs(60), "kernels took {took:?}");
    eprintln!("kernels against a drip: {took:?}: {}", err.trim());

    // `download` of a file: the body drips.
    let t = Instant::now();
    let mut c = khotfix_fetch();
    let devel = rpms::rpm_path("kernel-devel-5.10.134-18.al8.x86_64.rpm");
    c.args(["download", "--quiet", "--timeout", "2", "--cache-dir"])
        .arg(tmp.path().join("c2"))
        .arg("--checksum")
        .arg(format!("sha256:{}", rpms::sha256_of(&devel)))
        .arg(format!(
            "{}os/Packages/kernel-devel-5.10.134-18.al8.x86_64.rpm",
            srv.url()
        ));
    let (code, err, _) = run_measured(c);
    let took = t.elapsed();
    assert_ne!(code, 0, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("too slow"), "{err}");
    assert!(took < Duration::from_secs(60), "download took {took:?}");
    eprintln!("download against a drip: {took:?}: {}", err.trim());

    // The overall deadline, with the rate rule off: ends the download too.
    let t = Instant::now();
    let mut c = kernels(&srv, &tmp.path().join("c3"));
    c.args(["--timeout", "2"])
        .env("KHOTFIX_HTTP_MIN_RATE", "0")
        .env("KHOTFIX_HTTP_DEADLINE", "4");
    let (code, err, _) = run_measured(c);
    let took = t.elapsed();
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("deadline"), "{err}");
    assert!(took < Duration::from_secs(60), "kernels took {took:?}");
    eprintln!("kernels with a deadline: {took:?}: {}", err.trim());
}
