//! Property tests (issue 16) for the readers of untrusted input: the RPM
//! header/payload reader behind the unpacker (`prepare::srpm::unpack_rpm`)
//! and publish's metadata reader (`publish::rpmmeta`), and the repodata XML
//! readers (fetch's repomd.xml and primary.xml, publish's repomd.xml and
//! primary.xml). Arbitrary and mutated inputs must never panic, every error
//! must be one line, and memory stays bounded.
//!
//! Fixed seed, 256 cases per reader in the suite. Longer runs are opt-in:
//! `KHOTFIX_FUZZ_CASES=100000 cargo test --release --test fuzz_readers`
//! (and `KHOTFIX_FUZZ_SEED=N` for another seed); each test prints its case
//! count and the process's peak RSS.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::io::Write;
use std::path::Path;

/// Peak RSS allowed for the whole test process.
const RSS_LIMIT_KB: i64 = 1024 * 1024;

fn cases() -> u32 {
    std::env::var("KHOTFIX_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn runner(salt: u8) -> TestRunner {
    let seed: u64 = std::env::var("KHOTFIX_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x6b68_6678);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8] = salt;
    let config = Config {
        cases: cases(),
        rng_algorithm: RngAlgorithm::ChaCha,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

fn peak_rss_kb() -> i64 {
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss
}

fn report(what: &str, started: std::time::Instant) {
    let rss = peak_rss_kb();
    eprintln!(
        "{what}: {} cases in {:.1?}, process peak RSS {rss} KiB",
        cases(),
        started.elapsed()
    );
    assert!(rss < RSS_LIMIT_KB, "{what}: peak RSS {rss} KiB");
}

/// Apply `edits` to `seed`: byte overwrites, 32-bit fields set to extreme
/// values (counts and offsets in RPM headers), insertions, truncation.
fn mutate(seed: &[u8], edits: &[(u8, usize, u32)], cut: Option<usize>) -> Vec<u8> {
    let mut b = seed.to_vec();
    for &(kind, at, v) in edits {
        if b.is_empty() {
            break;
        }
        let i = at % b.len();
        match kind % 4 {
            0 => b[i] = v as u8,
            1 => {
                let extreme = [0u32, 1, 0x7fff_ffff, 0xffff_ffff, 0x0100_0000, v][v as usize % 6];
                let end = (i + 4).min(b.len());
                let be = extreme.to_be_bytes();
                b[i..end].copy_from_slice(&be[..end - i]);
            }
            2 => {
                let n = (v % 64) as usize;
                b.splice(i..i, vec![v as u8; n]);
            }
            _ => {
                let n = ((v % 64) as usize).min(b.len() - i);
                b.drain(i..i + n);
            }
        }
    }
    if let Some(c) = cut {
        b.truncate(c % (b.len() + 1));
    }
    b
}

fn edits() -> impl Strategy<Value = (Vec<(u8, usize, u32)>, Option<usize>)> {
    (
        proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u32>()), 1..8),
        proptest::option::weighted(0.2, any::<usize>()),
    )
}

fn one_line(what: &str, msg: &str) -> Result<(), TestCaseError> {
    if msg.contains('\n') || msg.trim().is_empty() {
        return Err(TestCaseError::fail(format!(
            "{what}: not one line: {msg:?}"
        )));
    }
    Ok(())
}

// ---- RPM -------------------------------------------------------------------

/// A small binary RPM with files, a directory and symlinks, gzip payload.
fn seed_rpm() -> Vec<u8> {
    let mut b = rpm::PackageBuilder::new("seed", "1.0", "MIT", "x86_64", "fuzz seed");
    b.using_config(rpm::BuildConfig::v4().compression(rpm::CompressionType::Gzip));
    b.release("1")
        .requires(rpm::Dependency::any("kpatch"))
        .provides(rpm::Dependency::eq("seed(x)", "1.0-1"));
    b.with_dir_entry(rpm::FileOptions::dir("/usr/lib/seed"))
        .unwrap();
    b.with_file_contents("hello\n", rpm::FileOptions::new("/usr/lib/seed/a.txt"))
        .unwrap();
    b.with_file_contents(vec![7u8; 300], rpm::FileOptions::new("/etc/seed.conf"))
        .unwrap();
    b.with_symlink(rpm::FileOptions::symlink("/usr/lib/seed/l", "a.txt"))
        .unwrap();
    b.with_symlink(rpm::FileOptions::symlink(
        "/usr/lib/seed/m",
        "/usr/lib/seed/l",
    ))
    .unwrap();
    let mut out = Vec::new();
    b.build().unwrap().write(&mut out).unwrap();
    out
}

#[test]
fn rpm_readers_never_panic_and_errors_are_one_line() {
    let seed = seed_rpm();
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let n = std::cell::Cell::new(0u64);
    runner(1)
        .run(&edits(), |(e, cut)| {
            let bytes = mutate(&seed, &e, cut);
            rpm_case(dir.path(), &bytes, &n)
        })
        .unwrap();
    // Arbitrary bytes too, some behind a valid lead.
    runner(2)
        .run(
            &(
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..2048),
            ),
            |(lead, tail)| {
                let mut bytes = if lead {
                    seed[..96].to_vec()
                } else {
                    Vec::new()
                };
                bytes.extend(tail);
                rpm_case(dir.path(), &bytes, &n)
            },
        )
        .unwrap();
    report("rpm readers", started);
}

fn rpm_case(dir: &Path, bytes: &[u8], n: &std::cell::Cell<u64>) -> Result<(), TestCaseError> {
    n.set(n.get() + 1);
    let n = n.get();
    let pkg = dir.join(format!("p{n}.rpm"));
    std::fs::File::create(&pkg)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    // The unpacker (header, file list, symlink checks, cpio payload).
    let dest = dir.join(format!("d{n}"));
    match khotfix::prepare::srpm::unpack_rpm(&pkg, &dest) {
        Ok(_) => {
            std::fs::remove_dir_all(&dest).unwrap();
        }
        Err(e) => {
            one_line("unpack_rpm", &e.to_string())?;
            if dest.exists() {
                return Err(TestCaseError::fail(
                    "unpack failed but left its destination",
                ));
            }
        }
    }
    // publish's metadata reader.
    let facts = khotfix::publish::rpmmeta::FileFacts {
        checksum: "0",
        size: bytes.len() as u64,
        mtime: 0,
        location: "Packages/p.rpm",
    };
    if let Err(e) = khotfix::publish::rpmmeta::read_package(&pkg, &facts) {
        one_line("rpmmeta", &format!("{e:#}"))?;
    }
    std::fs::remove_file(&pkg).unwrap();
    Ok(())
}

// ---- repodata XML ------------------------------------------------------------

const REPOMD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm">
  <revision>1700000000</revision>
  <data type="primary">
    <checksum type="sha256">aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa</checksum>
    <open-checksum type="sha256">bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb</open-checksum>
    <location href="repodata/x-primary.xml.gz"/>
    <timestamp>1700000000</timestamp>
    <size>123</size>
    <open-size>456</open-size>
  </data>
  <data type="filelists">
    <checksum type="sha256">cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc</checksum>
    <location href="repodata/x-filelists.xml.gz"/>
    <size>12</size>
  </data>
</repomd>
"#;

const PRIMARY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="2">
<package type="rpm">
  <name>kernel-devel</name>
  <arch>x86_64</arch>
  <version epoch="0" ver="5.10.134" rel="18.al8"/>
  <checksum type="sha256" pkgid="YES">dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd</checksum>
  <summary>devel &amp; &lt;headers&gt;</summary>
  <size package="4096" installed="1" archive="2"/>
  <location href="Packages/kernel-devel-5.10.134-18.al8.x86_64.rpm"/>
  <format><rpm:provides><rpm:entry name="kernel-devel" flags="EQ" epoch="0" ver="5.10.134" rel="18.al8"/></rpm:provides></format>
</package>
<package type="rpm">
  <name>kernel</name>
  <arch>x86_64</arch>
  <version epoch="0" ver="5.10.134" rel="18.al8"/>
  <checksum type="sha256" pkgid="YES">eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee</checksum>
  <size package="8192"/>
  <location href="Packages/kernel-5.10.134-18.al8.x86_64.rpm"/>
</package>
</metadata>
"#;

/// Mutations aimed at XML: the byte edits above plus splices of markup.
fn xml_mutate(
    seed: &str,
    e: &[(u8, usize, u32)],
    cut: Option<usize>,
    splice: &[(usize, u8)],
) -> Vec<u8> {
    const BITS: &[&str] = &[
        "<",
        ">",
        "</",
        "/>",
        "&",
        "&amp;",
        "&#0;",
        "&#xFFFFFFFF;",
        "<![CDATA[",
        "]]>",
        "<!--",
        "-->",
        "<?xml",
        "\"",
        "'",
        "=",
        "<!DOCTYPE x [<!ENTITY a \"aaaa\">]>",
        "&a;",
        "<package>",
        "</package>",
        "<name>",
        "xmlns:x=\"\"",
        "\u{feff}",
        "\0",
        "\u{fffd}",
    ];
    let mut b = mutate(seed.as_bytes(), e, cut);
    for &(at, k) in splice {
        let i = at % (b.len() + 1);
        let s = BITS[k as usize % BITS.len()];
        b.splice(i..i, s.bytes());
    }
    b
}

type XmlEdits = (Vec<(u8, usize, u32)>, Option<usize>, Vec<(usize, u8)>);

fn xml_edits() -> impl Strategy<Value = XmlEdits> {
    (
        proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u32>()), 0..4),
        proptest::option::weighted(0.1, any::<usize>()),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
    )
}

fn xml_case(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Err(e) = khotfix::fetch::repomd::parse("http://m/repodata/repomd.xml", bytes) {
        one_line("fetch repomd", &format!("{e:#}"))?;
    }
    if let Err(e) = khotfix::fetch::primary::parse("http://m/p.xml", bytes, |_, _| true) {
        one_line("fetch primary", &format!("{e:#}"))?;
    }
    if let Err(e) = khotfix::publish::repomd::parse(bytes) {
        one_line("publish repomd", &format!("{e:#}"))?;
    }
    if let Err(e) = khotfix::publish::verify::read_primary(bytes) {
        one_line("publish primary", &format!("{e:#}"))?;
    }
    // Compressed the same way a mirror would serve it.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    let gz = gz.finish().unwrap();
    if let Err(e) = khotfix::fetch::primary::parse("http://m/p.xml.gz", &gz[..], |_, _| true) {
        one_line("fetch primary (gz)", &format!("{e:#}"))?;
    }
    Ok(())
}

#[test]
fn repodata_xml_readers_never_panic_and_errors_are_one_line() {
    let started = std::time::Instant::now();
    for (salt, seed) in [(3u8, REPOMD), (4, PRIMARY)] {
        runner(salt)
            .run(&xml_edits(), |(e, cut, splice)| {
                xml_case(&xml_mutate(seed, &e, cut, &splice))
            })
            .unwrap();
    }
    runner(5)
        .run(&proptest::collection::vec(any::<u8>(), 0..1024), |b| {
            xml_case(&b)
        })
        .unwrap();
    // A truncated compressed stream: one line too.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(PRIMARY.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    for cut in [3, 10, gz.len() / 2, gz.len() - 4] {
        let e = khotfix::fetch::primary::parse("http://m/p.xml.gz", &gz[..cut], |_, _| true)
            .unwrap_err();
        assert!(!format!("{e:#}").contains('\n'), "{e:#}");
    }
    report("repodata XML readers", started);
}
