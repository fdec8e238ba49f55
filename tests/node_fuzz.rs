//! Issue 16 item 6: property tests over the node agent's host-file parsers
//! and the whole `node check` on generated fake roots (random bytes in
//! `osrelease`, `/proc/modules` and the livepatch sysfs files): never a
//! panic, bounded output, and the generated script (under dash) agrees with
//! `node check` on the exit code and the verdict line.
//!
//! Fixed seed and a short budget in the suite; `KHOTFIX_FUZZ_CASES=N` runs N
//! cases of the whole-check property (and 16 N of the parser one) instead.

mod support;

use khotfix::node::check::{flag_is_one, modules_list_has};
use khotfix::node::root::{clipped, shown, SHOWN_CHARS};
use khotfix::node::HostRoot;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::path::{Path, PathBuf};
use std::process::Command;

use support::node::RECIPE;
const CT4: &str = "/sys/fs/bpf/tc/globals/cilium_ct4_global";
const MODULE: &str = "kpatch_22519882";
const SEED: [u8; 32] = *b"khotfix-node-fuzz-issue-16-seed!";

fn cases(default: u32) -> u32 {
    std::env::var("KHOTFIX_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runner(cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &SEED))
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

/// Kernel releases the recipe cares about, and some it does not.
const RELEASES: &[&str] = &[
    "5.10.134-18.al8.x86_64",
    "5.10.134-15.al8.x86_64",
    "5.10.134-19.1.al8.x86_64",
    "5.10.134-19.2.al8.x86_64",
    "5.10.134-18.0.1.lifsea8.x86_64",
    "4.18.0-553.el8_10.x86_64",
    "6.1.0-56-amd64",
    "5.10.134-18",
];

/// osrelease contents: valid releases in random white space, valid ones with
/// a random byte spliced in, or random bytes.
fn osrelease() -> impl Strategy<Value = Vec<u8>> {
    let ws = proptest::collection::vec(
        prop::sample::select(vec![b' ', b'\t', b'\n', b'\r', 0x0c, 0x0b]),
        0..3,
    );
    prop_oneof![
        4 => (prop::sample::select(RELEASES), ws.clone(), ws).prop_map(|(r, a, b)| {
            let mut v = a;
            v.extend_from_slice(r.as_bytes());
            v.extend(b);
            v
        }),
        2 => (prop::sample::select(RELEASES), any::<u8>(), any::<prop::sample::Index>()).prop_map(
            |(r, byte, at)| {
                let mut v = r.as_bytes().to_vec();
                v.insert(at.index(v.len() + 1), byte);
                v
            }
        ),
        1 => bytes(200),
    ]
}

/// /proc/modules: random bytes, with or without the module's line.
fn modules() -> impl Strategy<Value = Option<Vec<u8>>> {
    let line = prop::sample::select(vec![
        &b"kpatch_22519882 16384 1 - Live 0x0 (OEK)\n"[..],
        b"kpatch_22519882 ",
        b"kpatch_22519882\n",
        b"kpatch_225198820 16384 1 - Live 0x0\n",
        b"xkpatch_22519882 1\n",
    ]);
    let sep = prop::sample::select(vec![&b"\n"[..], b"\0", b"", b"\r\n", b"\xff"]);
    prop_oneof![
        1 => Just(None),
        4 => (bytes(120), sep, proptest::option::of(line), bytes(60)).prop_map(|(a, s, l, b)| {
            let mut v = a;
            v.extend_from_slice(s);
            if let Some(l) = l {
                v.extend_from_slice(l);
            }
            v.extend(b);
            Some(v)
        }),
    ]
}

/// A livepatch flag file.
fn flag() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        1 => Just(None),
        4 => prop::sample::select(vec![
            &b"1"[..], b"1\n", b"0\n", b"0", b" 1", b"1 ", b"1\0", b"\xff", b"1\n\n", b"", b"11",
        ])
        .prop_map(|b| Some(b.to_vec())),
        1 => bytes(10).prop_map(Some),
    ]
}

/// A file's bytes, or no file.
type MaybeFile = Option<Vec<u8>>;

#[derive(Debug, Clone)]
struct Host {
    required: bool,
    osrelease: Vec<u8>,
    modules: MaybeFile,
    /// The livepatch directory, with its `enabled` and `transition` files.
    livepatch: Option<(MaybeFile, MaybeFile)>,
}

fn host() -> impl Strategy<Value = Host> {
    (
        prop::bool::weighted(0.9),
        osrelease(),
        modules(),
        proptest::option::of((flag(), flag())),
    )
        .prop_map(|(required, osrelease, modules, livepatch)| Host {
            required,
            osrelease,
            modules,
            livepatch,
        })
}

fn write(root: &Path, host: &str, bytes: &[u8]) {
    let p = root.join(host.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn lay_out(h: &Host, root: &Path) {
    if h.required {
        write(root, CT4, b"");
    }
    write(root, "/proc/sys/kernel/osrelease", &h.osrelease);
    if let Some(m) = &h.modules {
        write(root, "/proc/modules", m);
    }
    if let Some((enabled, transition)) = &h.livepatch {
        let dir = format!("/sys/kernel/livepatch/{MODULE}");
        std::fs::create_dir_all(root.join(dir.trim_start_matches('/'))).unwrap();
        if let Some(e) = enabled {
            write(root, &format!("{dir}/enabled"), e);
        }
        if let Some(t) = transition {
            write(root, &format!("{dir}/transition"), t);
        }
    }
}

fn script() -> PathBuf {
    let p = std::env::temp_dir().join(format!("khotfix-node-fuzz-{}.sh", std::process::id()));
    support::node::script(RECIPE, &p);
    p
}

/// The whole check on random fake roots: `node check` (in process) and the
/// script agree, nothing panics, output stays short.
#[test]
fn check_and_script_agree_on_random_hosts() {
    let recipe = khotfix::node::check::load_recipe(Path::new(RECIPE)).unwrap();
    let script = script();
    let n = cases(256);
    let start = std::time::Instant::now();
    let verdicts = std::cell::RefCell::new(std::collections::BTreeMap::<i32, u32>::new());
    let result = runner(n).run(&host(), |h| {
        let dir = tempfile::tempdir().unwrap();
        lay_out(&h, dir.path());
        let (code, line) = match khotfix::node::check(&recipe, &HostRoot::new(dir.path())) {
            Ok(r) => (r.exit_code, r.line()),
            Err(e) => (2, format!("khotfix: error: {e:#}")),
        };
        let out = Command::new("dash")
            .arg(&script)
            .env("KHOTFIX_ROOT", dir.path())
            .output()
            .unwrap();
        let s_code = out.status.code().unwrap_or(-1);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().unwrap_or_default();
        let s_line = last.strip_prefix("dry run: ").unwrap_or(last);
        prop_assert_eq!(
            code,
            s_code,
            "check: {}\nscript: {}{}",
            line,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        if code != 2 {
            prop_assert_eq!(line.as_str(), s_line);
        } else {
            prop_assert!(out.stdout.is_empty(), "script: {}", stdout);
            prop_assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
        }
        prop_assert!(line.len() < 600, "check line of {} bytes", line.len());
        prop_assert!(out.stdout.len() + out.stderr.len() < 1200);
        *verdicts.borrow_mut().entry(code).or_default() += 1;
        Ok(())
    });
    let _ = std::fs::remove_file(&script);
    if let Err(e) = result {
        panic!("{e}");
    }
    let verdicts = verdicts.into_inner();
    println!(
        "node fuzz: {n} hosts in {:.1} s, exit codes {verdicts:?}",
        start.elapsed().as_secs_f64()
    );
    // The generator reaches every outcome (a property that always errors
    // would prove little).
    for code in [0, 1, 2, 3] {
        assert!(
            n < 100 || verdicts.contains_key(&code),
            "no case exited {code}: {verdicts:?}"
        );
    }
}

/// The parsers on arbitrary bytes: no panic, bounded echo.
#[test]
fn parsers_never_panic_and_echo_is_bounded() {
    let n = cases(256) * 16;
    let start = std::time::Instant::now();
    let strategy = (bytes(400), any::<String>());
    runner(n)
        .run(&strategy, |(b, s)| {
            let _ = modules_list_has(&b, MODULE);
            let _ = flag_is_one(&b);
            let _ = khotfix::kernel::KernelRelease::parse(&s);
            let _ = khotfix::kernel::KernelRelease::parse(&String::from_utf8_lossy(&b));
            for text in [shown(&b), shown(s.as_bytes()), clipped(&b)] {
                // Each kept character escapes to at most 10 (`\u{10ffff}`).
                prop_assert!(text.chars().count() <= SHOWN_CHARS * 10 + 3);
                prop_assert!(!text.chars().any(khotfix::node::text::is_non_printing));
            }
            Ok(())
        })
        .unwrap();
    println!(
        "node parsers fuzz: {n} inputs in {:.1} s",
        start.elapsed().as_secs_f64()
    );
}
