//! Issue 16 item 3: symlink resolution in the RPM unpacker is linear in the
//! number of entries. Hostile packages whose links fan out (each link's
//! target walks through several other links) used to take exponential time;
//! cycles and escapes hidden deep in a fan-out are refused with one line.
//! Packages are built with the rpm crate (what a mirror could serve).

use khotfix::prepare::srpm::{self, EntryKind, UnpackError};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// Generous bound for "finishes at all": the old resolver needed hours.
const HANG: Duration = Duration::from_secs(60);

/// `n` links `/usr/f/l0 .. l{n-1}`; link i walks through links i+1, i+2 and
/// i+3 (`l{i+1}/../l{i+2}/../l{i+3}`, capped at the last link), so naive recursion costs ~1.84^n.
/// `last` is the target of the deepest link.
fn fan_out_rpm(dir: &Path, name: &str, n: usize, last: &str) -> PathBuf {
    let mut b = rpm::PackageBuilder::new(name, "1.0", "MIT", "noarch", "fan-out links");
    b.using_config(rpm::BuildConfig::v4().compression(rpm::CompressionType::Gzip));
    b.with_dir_entry(rpm::FileOptions::dir("/usr/f/real"))
        .unwrap();
    for i in 0..n {
        let target = if i + 1 == n {
            last.to_string()
        } else {
            let j = |k: usize| (i + k).min(n - 1);
            format!("l{}/../l{}/../l{}", j(1), j(2), j(3))
        };
        b.with_symlink(rpm::FileOptions::symlink(format!("/usr/f/l{i}"), target))
            .unwrap();
    }
    let pkg = b.build().unwrap();
    let p = dir.join(format!("{name}.rpm"));
    pkg.write_file(&p).unwrap();
    p
}

/// Unpack on a thread; fail the test (instead of hanging) past [`HANG`].
fn unpack_bounded(rpm: &Path, dest: &Path) -> Result<srpm::Unpacked, UnpackError> {
    let (tx, rx) = mpsc::channel();
    let (r, d) = (rpm.to_path_buf(), dest.to_path_buf());
    std::thread::spawn(move || {
        let _ = tx.send(srpm::unpack_rpm(&r, &d));
    });
    rx.recv_timeout(HANG)
        .unwrap_or_else(|_| panic!("{}: unpack did not finish in {HANG:?}", rpm.display()))
}

#[test]
fn symlink_fan_out_resolves_in_linear_time() {
    let d = tempfile::tempdir().unwrap();
    // Depth 40 (the limit, like the kernel's ELOOP): accepted.
    let rpm = fan_out_rpm(d.path(), "fan-out", 41, "real");
    let size = std::fs::metadata(&rpm).unwrap().len();
    assert!(
        size < 16 * 1024,
        "the hostile package is small ({size} bytes)"
    );
    let dest = d.path().join("out");
    let un = unpack_bounded(&rpm, &dest).unwrap();
    let links: Vec<_> = un
        .entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::Symlink { .. }))
        .collect();
    assert_eq!(links.len(), 41);
    // Links are written as they are (relative targets kept). The kernel
    // counts every link it follows (40 in all), so only the last few resolve
    // on disk; those resolve, through the others, to the real directory.
    for i in 0..41 {
        let t = std::fs::read_link(dest.join(format!("usr/f/l{i}"))).unwrap();
        assert!(t.is_relative(), "l{i} -> {}", t.display());
    }
    for i in 37..41 {
        let l = dest.join(format!("usr/f/l{i}"));
        assert_eq!(
            std::fs::canonicalize(&l).unwrap(),
            std::fs::canonicalize(dest.join("usr/f/real")).unwrap(),
            "l{i}"
        );
    }
}

#[test]
fn symlink_fan_out_too_deep_cycle_or_escape_is_one_line() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        // 60 levels: over the limit of 40.
        ("too-deep", 61, "real", "too many levels"),
        // The deepest link points back at the first: a cycle under the fan-out.
        ("cycle", 45, "l0", "too many levels"),
        // The deepest link escapes; every link above walks through it.
        ("escape", 30, "../../../../etc", "leaves the tree"),
    ];
    for (name, n, last, reason) in cases {
        let rpm = fan_out_rpm(d.path(), name, n, last);
        let dest = d.path().join(format!("w-{name}/dest"));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let e = unpack_bounded(&rpm, &dest).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, UnpackError::Unsafe { .. }),
            "{name}: expected a refusal: {msg}"
        );
        assert!(msg.contains(reason), "{name}: {msg}");
        assert!(msg.contains(&rpm.display().to_string()), "{name}: {msg}");
        assert!(!msg.contains('\n'), "{name}: {msg}");
        assert!(!dest.exists(), "{name}: destination written");
        // Nothing but the (empty) parent was left behind.
        assert_eq!(
            std::fs::read_dir(dest.parent().unwrap()).unwrap().count(),
            0,
            "{name}: leftovers"
        );
    }
}

/// Many independent fan-out groups: total work grows with the entry count
/// (memoized), so 2,000 links unpack well inside the hang bound.
#[test]
fn many_links_unpack() {
    let d = tempfile::tempdir().unwrap();
    let rpm = fan_out_rpm(d.path(), "many", 2000, "real");
    // Chains longer than 40 are refused; that is the point of the depth
    // limit, and it must be reported quickly, not after exploring them all.
    let e = unpack_bounded(&rpm, &d.path().join("dest")).unwrap_err();
    assert!(e.to_string().contains("too many levels"), "{e}");
}
