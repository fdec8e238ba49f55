//! The kpatch release tarball builder images compile kpatch-build from
//! (src/build/kpatch_source.rs): the real release is accepted, anything else
//! is refused with one line naming the file, by the library and by
//! `khotfix builder build --kpatch-source`.
//!
//! The release itself comes from `$KHOTFIX_KPATCH_SOURCE` (`.ci/env` points
//! it at the vendored copy); without it the first test reports itself as
//! ignored (run with `-- --ignored` after setting it).

mod support;

use support::bin::khotfix;

use khotfix::build::kpatch_source::{verify, PINNED};
use std::io::{Read, Write};
use std::path::PathBuf;

fn release() -> Option<PathBuf> {
    std::env::var_os("KHOTFIX_KPATCH_SOURCE").map(PathBuf::from)
}

#[test]
fn the_pinned_release_verifies_and_a_changed_copy_does_not() {
    let Some(src) = release() else {
        panic!("KHOTFIX_KPATCH_SOURCE is not set: source .ci/env (it names the vendored release)");
    };
    let ok = verify(&src, &PINNED).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.commit, PINNED.commit);

    // The same tar, recompressed at another level: still the release (the
    // digest is over the uncompressed stream).
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(&src).unwrap())
        .read_to_end(&mut tar)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let regz = dir.path().join("recompressed.tar.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&tar).unwrap();
    std::fs::write(&regz, enc.finish().unwrap()).unwrap();
    verify(&regz, &PINNED).unwrap_or_else(|e| panic!("recompressed: {e}"));

    // One byte of one file changed: refused, naming the file and the commit.
    let pos = tar.len() / 2;
    tar[pos] ^= 0x20;
    let bad = dir.path().join("tampered.tar.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&tar).unwrap();
    std::fs::write(&bad, enc.finish().unwrap()).unwrap();
    let e = verify(&bad, &PINNED).unwrap_err().to_string();
    assert!(
        e.contains("tampered.tar.gz") && e.contains(PINNED.commit) && !e.contains('\n'),
        "{e}"
    );
}

#[test]
fn builder_build_refuses_a_wrong_kpatch_source_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("kpatch-0.9.11.tar.gz");
    std::fs::write(&bogus, b"not a tarball").unwrap();
    let out = khotfix()
        .args(["builder", "build", "debian12", "--kpatch-source"])
        .arg(&bogus)
        .env("KHOTFIX_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("kpatch-0.9.11.tar.gz") && stderr.contains("not a gzip-compressed tar"),
        "{stderr}"
    );
}
