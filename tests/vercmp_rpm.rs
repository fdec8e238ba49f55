//! Differential test: `khotfix::kernel::rpmvercmp` against the real rpm tool.
//!
//! A deterministic generator builds a corpus of version-string pairs (digits,
//! letters, leading zeros, `~`, `^`, separators `. _ + -` and others, empty
//! segments, and near-identical pairs made by small edits). All pairs go to a
//! temporary file that ONE `rpm --eval` call reads with a Lua loop, printing
//! `rpm.vercmp(a, b)` for each; every answer is compared with ours.
//! Needs Debian's `rpm` package (4.18 here).
//!
//! rpm >= 4.16's Lua `rpm.vercmp` parses each argument as `[E:]V[-R]` before
//! comparing (and refuses ""), so:
//! - plain pairs contain no `-` or `:` and are never empty: rpm then compares
//!   exactly `rpmvercmp(a, b)`. (`-` is an ordinary separator in rpmvercmp,
//!   like the `.`, `_`, `+`, `#`, `,`, `=` the corpus does use.)
//! - `V-R` pairs (both sides with a release) check the version-then-release
//!   order that kernel ranges use: `rpmvercmp(V) then rpmvercmp(R)`, which is
//!   what `KernelRelease::cmp_version_release` does.

use khotfix::kernel::{rpmvercmp, Flavor, KernelRelease};
use std::cmp::Ordering;
use std::io::Write;
use std::process::Command;

/// Small deterministic PRNG (xorshift64*), so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const SEPS: &[&str] = &[".", ".", ".", "_", "+", "..", "._", "#", ",", "="];
const WORDS: &[&str] = &[
    "a", "b", "z", "A", "Z", "rc", "RC", "el", "al", "fc", "git", "beta", "alpha", "pre", "lifsea",
];

fn number(r: &mut Rng) -> String {
    match r.below(8) {
        0 => "0".into(),
        1 => format!("0{}", r.below(100)),
        2 => format!("00{}", r.below(10)),
        3 => format!("{}", r.below(100_000)),
        4 => "99999999999999999999".into(), // longer than any integer type
        5 => "000".into(),
        _ => format!("{}", r.below(20)),
    }
}

fn segment(r: &mut Rng) -> String {
    match r.below(10) {
        0..=4 => number(r),
        5 | 6 => r.pick(WORDS).to_string(),
        7 => format!("{}{}", number(r), r.pick(WORDS)),
        8 => format!("{}{}", r.pick(WORDS), number(r)),
        _ => String::new(), // empty segment: two separators in a row
    }
}

fn version(r: &mut Rng) -> String {
    let mut s = String::new();
    if r.below(20) == 0 {
        s.push_str(r.pick(&[".", "~", "^", "_"]));
    }
    let n = 1 + r.below(5);
    for i in 0..n {
        if i > 0 {
            match r.below(12) {
                0 => s.push('~'),
                1 => s.push('^'),
                _ => s.push_str(r.pick(SEPS)),
            }
        }
        s.push_str(&segment(r));
    }
    match r.below(12) {
        0 => s.push('~'),
        1 => s.push('^'),
        2 => s.push('.'),
        _ => {}
    }
    s
}

/// A small edit of `a`, so that many pairs agree on a long prefix.
fn mutate(r: &mut Rng, a: &str) -> String {
    let mut b: Vec<char> = a.chars().collect();
    let pos = if b.is_empty() {
        0
    } else {
        r.below(b.len() + 1)
    };
    match r.below(9) {
        0 => b.insert(pos, '0'),
        1 => b.insert(pos, '~'),
        2 => b.insert(pos, '^'),
        3 => b.insert(pos, *['.', '_', '+', '#'].get(r.below(4)).unwrap_or(&'.')),
        4 if pos < b.len() => {
            b.remove(pos);
        }
        5 if pos < b.len() && b[pos].is_ascii_digit() => {
            b[pos] = char::from(b'0' + ((b[pos] as u8 - b'0' + 1) % 10));
        }
        6 => b.extend(format!(".{}", r.below(10)).chars()),
        7 => b.extend(r.pick(WORDS).chars()),
        _ => return a.replace('.', r.pick(&["_", "+", "=", ".."])),
    }
    let b: String = b.into_iter().collect();
    if b.is_empty() {
        "0".into()
    } else {
        b
    }
}

fn corpus() -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = [
        ("1.0", "1.0"),
        ("1.0", "2.0"),
        ("2.0.1", "2.0.1"),
        ("2.0", "2.0.1"),
        ("5.5p1", "5.5p1"),
        ("5.5p1", "5.5p2"),
        ("5.5p10", "5.5p10"),
        ("10xyz", "10.1xyz"),
        ("xyz10", "xyz10.1"),
        ("xyz.4", "xyz.4"),
        ("xyz.4", "8"),
        ("xyz.4", "2"),
        ("5.5p2", "5.6p1"),
        ("5.6p1", "6.5p1"),
        ("6.0.rc1", "6.0"),
        ("10b2", "10a1"),
        ("1.0aa", "1.0aa"),
        ("1.0a", "1.0aa"),
        ("10.0001", "10.0001"),
        ("10.0001", "10.1"),
        ("10.0001", "10.0039"),
        ("4.999.9", "5.0"),
        ("20101121", "20101121"),
        ("20101121", "20101122"),
        ("2_0", "2_0"),
        ("2.0", "2_0"),
        ("a", "a"),
        ("a+", "a+"),
        ("a+", "a_"),
        ("+a", "+a"),
        ("+a", "_a"),
        ("+_", "+_"),
        ("_+", "+_"),
        ("_+", "_+"),
        ("+", "_"),
        ("1.0~rc1", "1.0~rc1"),
        ("1.0~rc1", "1.0"),
        ("1.0~rc1", "1.0~rc2"),
        ("1.0~rc1~git123", "1.0~rc1"),
        ("1.0^", "1.0^"),
        ("1.0^", "1.0"),
        ("1.0^git1", "1.0^git2"),
        ("1.0^git1", "1.01"),
        ("1.0^20160101", "1.0.1"),
        ("1.0^20160101^git1", "1.0^20160101"),
        ("1.0~rc1^git1", "1.0~rc1"),
        ("1.0^git1~pre", "1.0^git1"),
        ("~", "^"),
        ("00", "0"),
        ("0", "000"),
        ("1.000", "1"),
        ("1062.9.1", "1062.99"),
        ("18.0.1", "19.1"),
        ("19.1", "19.1.1"),
        ("19.2", "19.1"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let mut r = Rng(0x6b68_6f74_6669_7821); // "khotfix!"
    let version = |r: &mut Rng| loop {
        let v = version(r);
        if !v.is_empty() {
            return v;
        }
    };
    while pairs.len() < 1200 {
        let (a, b) = (version(&mut r), version(&mut r));
        pairs.push((a, b));
    }
    while pairs.len() < 3000 {
        let a = version(&mut r);
        let mut b = mutate(&mut r, &a);
        if r.below(3) == 0 {
            b = mutate(&mut r, &b);
        }
        pairs.push((a, b));
    }
    // Both orders of a slice of them: antisymmetry must hold in rpm and in ours.
    let swapped: Vec<_> = pairs
        .iter()
        .step_by(7)
        .map(|(a, b)| (b.clone(), a.clone()))
        .collect();
    pairs.extend(swapped);
    for (a, b) in &pairs {
        assert!(
            !a.is_empty() && !b.is_empty() && !a.contains(['-', ':']) && !b.contains(['-', ':']),
            "{a:?} {b:?}"
        );
    }
    pairs
}

/// `V-R` pairs: kernel-style version-release strings and generated ones.
fn release_corpus() -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = [
        ("5.10.134-15", "5.10.134-19.1"),
        ("5.10.134-18.0.1", "5.10.134-19.1"),
        ("5.10.134-19.2", "5.10.134-19.1"),
        ("5.10.134-19.1.1", "5.10.134-19.1"),
        ("3.10.0-1062", "3.10.0-1062.99"),
        ("3.10.0-1062.18.1", "3.10.0-1062.99"),
        ("3.10.0-1127", "3.10.0-1062.99"),
        ("6.1.0-56", "6.1.0-9999"),
        ("6.1.0-1", "6.1.0-56"),
        ("5.10.134-15", "5.10.134-15"),
        ("5.10.0-15", "5.10.134-1"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let mut r = Rng(0x7265_6c65_6173_6521); // "release!"
    let part = |r: &mut Rng| loop {
        let v = version(r);
        // A leading run of digits followed by nothing else would be fine, but
        // keep parts from starting with a separator that rpm's parser eats.
        if !v.is_empty() && v.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return v;
        }
    };
    while pairs.len() < 800 {
        let (v, rel) = (part(&mut r), part(&mut r));
        let a = format!("{v}-{rel}");
        let b = match r.below(3) {
            0 => format!("{}-{}", part(&mut r), part(&mut r)),
            1 => format!("{v}-{}", mutate(&mut r, &rel)),
            _ => format!("{}-{rel}", mutate(&mut r, &v)),
        };
        pairs.push((a, b));
    }
    pairs
}

/// Ask rpm once for every pair. Returns rpm's answers in order.
fn rpm_vercmp_all(pairs: &[(String, String)]) -> Vec<i32> {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    for (a, b) in pairs {
        assert!(!a.contains(['\t', '\n', '%']) && !b.contains(['\t', '\n', '%']));
        writeln!(f, "{a}\t{b}").expect("write pairs");
    }
    f.flush().expect("flush pairs");
    let path = f.path().to_str().expect("utf-8 temp path").to_string();
    assert!(
        !path.contains(['"', '%', '\\']),
        "unexpected temp path {path}"
    );
    let lua = format!(
        "%{{lua: for line in io.lines(\"{path}\") do \
         local a, b = string.match(line, \"^(.-)\\t(.*)$\"); \
         print(rpm.vercmp(a, b) .. \"\\n\") end}}"
    );
    let out = Command::new("rpm")
        .arg("--eval")
        .arg(&lua)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run rpm ({e}); this test needs the real rpm tool: apt-get install rpm")
        });
    assert!(
        out.status.success(),
        "rpm --eval failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("rpm output is text");
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.trim()
                .parse::<i32>()
                .unwrap_or_else(|_| panic!("unexpected rpm output line {l:?}"))
        })
        .collect()
}

/// `V-R` split at the last `-`, as rpm's EVR parser does.
fn split_vr(s: &str) -> (&str, &str) {
    s.rsplit_once('-').unwrap_or((s, ""))
}

fn sign(o: Ordering) -> i32 {
    match o {
        Ordering::Less => -1,
        Ordering::Equal => 0,
        Ordering::Greater => 1,
    }
}

#[test]
fn rpmvercmp_matches_rpm_on_generated_corpus() {
    let pairs = corpus();
    assert!(pairs.len() >= 2000, "corpus has only {} pairs", pairs.len());
    let distinct: std::collections::HashSet<_> = pairs.iter().collect();
    assert!(
        distinct.len() >= 2000,
        "corpus has only {} distinct pairs",
        distinct.len()
    );
    let answers = rpm_vercmp_all(&pairs);
    assert_eq!(
        answers.len(),
        pairs.len(),
        "rpm printed {} answers for {} pairs",
        answers.len(),
        pairs.len()
    );
    let mut mismatches = Vec::new();
    let mut seen = [0usize; 3];
    for ((a, b), want) in pairs.iter().zip(&answers) {
        let got = sign(rpmvercmp(a, b));
        seen[(want + 1) as usize] += 1;
        if got != *want {
            mismatches.push(format!(
                "rpmvercmp({a:?}, {b:?}): rpm says {want}, khotfix says {got}"
            ));
        }
    }
    // The corpus must exercise all three outcomes, or it proves little.
    assert!(
        seen.iter().all(|&n| n >= 100),
        "outcome counts (-1, 0, 1) = {seen:?}"
    );
    assert!(
        mismatches.is_empty(),
        "{} of {} pairs disagree with rpm:\n{}",
        mismatches.len(),
        pairs.len(),
        mismatches
            .iter()
            .take(60)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn version_release_order_matches_rpm() {
    let pairs = release_corpus();
    let answers = rpm_vercmp_all(&pairs);
    assert_eq!(answers.len(), pairs.len());
    let mut mismatches = Vec::new();
    for ((a, b), want) in pairs.iter().zip(&answers) {
        let ((va, ra), (vb, rb)) = (split_vr(a), split_vr(b));
        let got = sign(rpmvercmp(va, vb).then_with(|| rpmvercmp(ra, rb)));
        if got != *want {
            mismatches.push(format!(
                "{a:?} vs {b:?}: rpm says {want}, khotfix says {got}"
            ));
        }
        // Kernel-shaped bounds go through KernelRelease too.
        if let (Ok(ka), Ok(kb)) = (KernelRelease::parse(a), KernelRelease::parse(b)) {
            let got = sign(ka.cmp_version_release(&kb));
            if got != *want {
                mismatches.push(format!(
                    "KernelRelease {a:?} vs {b:?}: rpm says {want}, khotfix says {got}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} disagreements:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn kernel_releases_from_the_issue() {
    let k = |s: &str| KernelRelease::parse(s).unwrap_or_else(|e| panic!("{e}"));
    let r = k("3.10.0-1062.9.1.el7.x86_64");
    assert_eq!(
        (
            r.version.as_str(),
            r.release.as_str(),
            r.dist.as_deref(),
            r.arch.as_deref()
        ),
        ("3.10.0", "1062.9.1", Some("el7"), Some("x86_64"))
    );
    assert_eq!(r.flavor, Flavor::dist("el7"));
    let r = k("5.10.134-18.al8.x86_64");
    assert_eq!(
        (r.release.as_str(), r.flavor.name()),
        ("18", "al8".to_string())
    );
    let r = k("5.10.134-18.0.1.lifsea8.x86_64");
    // The seed script's regex cut this to 5.10.134-18.0; the whole release is kept.
    assert_eq!(r.version_release(), "5.10.134-18.0.1");
    assert_eq!(r.flavor, Flavor::dist("lifsea8"));
    let r = k("5.10.134-19.1.al8.x86_64");
    assert_eq!(
        (r.release.as_str(), r.package_suffix()),
        ("19.1", "5.10.134-19.1".to_string())
    );
    let r = k("6.1.0-56-amd64");
    assert_eq!(
        (r.version.as_str(), r.release.as_str(), r.arch.as_deref()),
        ("6.1.0", "56", Some("amd64"))
    );
    assert_eq!(r.flavor, Flavor::Debian);
    // Ordering follows rpm: 19.1 < 19.2, 18.0.1 inside 15 ..= 19.1, 1062.18.1 > 1062.9.1.
    assert!(k("5.10.134-19.1.al8.x86_64") < k("5.10.134-19.2.al8.x86_64"));
    assert!(k("3.10.0-1062.18.1.el7.x86_64") > k("3.10.0-1062.9.1.el7.x86_64"));
    assert!(k("5.10.134-18.0.1.lifsea8.x86_64")
        .cmp_version_release(&k("5.10.134-19.1"))
        .is_lt());
    for bad in [
        "5.10.134",
        "5.10.134-",
        "5.10.134-18;id.al8",
        "../5.10.134-18",
        "5.10.134-18.al8.x86_64 ",
        "",
    ] {
        assert!(
            KernelRelease::parse(bad).is_err(),
            "{bad:?} should be refused"
        );
    }
}
