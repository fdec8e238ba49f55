//! Property tests for the parsers that read user input: unified diffs,
//! recipes and kernel lists. Fixed seed and a short budget in the suite;
//! `KHOTFIX_FUZZ_CASES=N` runs N cases per property instead (opt-in, long).
//!
//! Diffs: no input panics the parser or yields a multi-line error; diffs
//! written by GNU `diff -u` for generated files (also in the mangled forms
//! GNU `patch` accepts) parse, and on a sample GNU `patch --dry-run`
//! accepts the same text on the original file.

use khotfix::patchfile::Patch;
use khotfix::plan::parse_kernel_list;
use khotfix::recipe::Recipe;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn cases(default: u32) -> u32 {
    std::env::var("KHOTFIX_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// A runner with a fixed seed (per property) and `cases` cases.
fn runner(seed: u8, cases: u32) -> TestRunner {
    TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    )
}

/// Run a property and print its figures (shown with --nocapture).
fn run<S: Strategy>(
    name: &str,
    seed: u8,
    default: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let n = cases(default);
    let start = Instant::now();
    runner(seed, n).run(&strategy, test).unwrap();
    eprintln!("{name}: {n} cases in {:.2?}", start.elapsed());
}

fn one_line_patch_error(text: &str) -> Result<(), TestCaseError> {
    if let Err(e) = Patch::parse(text) {
        prop_assert!(e.line >= 1);
        prop_assert!(!e.to_string().contains('\n'), "multi-line error {e}");
    }
    Ok(())
}

#[test]
fn diff_parser_never_panics_on_arbitrary_bytes() {
    run(
        "diff/arbitrary-bytes",
        1,
        512,
        proptest::collection::vec(any::<u8>(), 0..2000),
        |b| one_line_patch_error(&String::from_utf8_lossy(&b)),
    );
}

#[test]
fn diff_parser_never_panics_on_diff_shaped_text() {
    let line = "(--- |\\+\\+\\+ |@@ -[0-9,]{0,7} \\+[0-9,]{0,7} @@|diff --git |rename to |index | |-|\\+|=|\t|\\\\| ?)[a-z/. \"\\\\]{0,12}(\r)?\n";
    run(
        "diff/diff-shaped",
        2,
        512,
        proptest::collection::vec(proptest::string::string_regex(line).unwrap(), 0..30),
        |lines| one_line_patch_error(&lines.concat()),
    );
}

/// Lines of a generated C-ish file: a small alphabet so diffs have context.
fn file_lines() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        prop_oneof![
            Just(String::new()),
            Just("{".to_string()),
            Just("}".to_string()),
            "\t[a-z]{1,6}\\([a-z0-9]{0,3}\\);",
            "[a-z]{1,8}",
        ],
        1..60,
    )
}

/// An edit of `old`: (position, delete count, inserted lines) applied in turn.
fn edits() -> impl Strategy<Value = Vec<(usize, usize, Vec<String>)>> {
    proptest::collection::vec(
        (
            any::<usize>(),
            0usize..4,
            proptest::collection::vec("\t?[a-z]{0,6};?", 0..4),
        ),
        1..5,
    )
}

fn apply_edits(old: &[String], ops: &[(usize, usize, Vec<String>)]) -> Vec<String> {
    let mut v = old.to_vec();
    for (at, del, ins) in ops {
        let at = at % (v.len() + 1);
        let end = (at + del).min(v.len());
        v.splice(at..end, ins.iter().cloned());
    }
    v
}

fn text(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// GNU diff -u of two files named a/f.c and b/f.c (None if they are equal).
fn gnu_diff(dir: &Path, old: &str, new: &str) -> Option<String> {
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::create_dir_all(dir.join("b")).unwrap();
    std::fs::write(dir.join("a/f.c"), old).unwrap();
    std::fs::write(dir.join("b/f.c"), new).unwrap();
    let out = Command::new("diff")
        .args(["-u", "a/f.c", "b/f.c"])
        .current_dir(dir)
        .output()
        .unwrap();
    match out.status.code() {
        Some(0) => None,
        Some(1) => Some(String::from_utf8(out.stdout).unwrap()),
        c => panic!("diff -u: {c:?}"),
    }
}

fn gnu_patch_accepts(dir: &Path, diff: &str) -> bool {
    std::fs::write(dir.join("x.patch"), diff).unwrap();
    Command::new("patch")
        .args(["--dry-run", "-s", "-p1", "--batch", "-d"])
        .arg(dir.join("a"))
        .arg("-i")
        .arg(dir.join("x.patch"))
        .output()
        .unwrap()
        .status
        .success()
}

/// GNU patch's mangled-but-accepted forms of a well-formed diff: blank
/// context lines as empty lines, tab-led context lines without their space.
fn mangled(diff: &str) -> String {
    diff.lines()
        .map(|l| match l.strip_prefix(' ') {
            Some(rest) if rest.is_empty() || rest.starts_with('\t') => format!("{rest}\n"),
            _ => format!("{l}\n"),
        })
        .collect()
}

#[test]
fn generated_diffs_parse_and_gnu_patch_agrees_on_a_sample() {
    let sample = std::cell::Cell::new(0u32);
    run(
        "diff/generated-vs-gnu-patch",
        3,
        128,
        (file_lines(), edits(), any::<bool>()),
        |(old, ops, mangle)| {
            let new = apply_edits(&old, &ops);
            let d = tempfile::tempdir().unwrap();
            let Some(diff) = gnu_diff(d.path(), &text(&old), &text(&new)) else {
                return Ok(());
            };
            let diff = if mangle { mangled(&diff) } else { diff };
            let p = Patch::parse(&diff);
            prop_assert!(p.is_ok(), "{:?}\n{diff}", p.err());
            let p = p.unwrap();
            prop_assert_eq!(&p.files[0].path, "f.c");
            // Every `+` line of the diff is in the parsed hunks, in order.
            let added: Vec<&str> = diff
                .lines()
                .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
                .collect();
            let parsed: Vec<&str> = p.files[0]
                .hunks
                .iter()
                .flat_map(|h| &h.lines)
                .filter(|l| l.starts_with('+'))
                .map(String::as_str)
                .collect();
            prop_assert_eq!(added, parsed);
            // A sample through GNU patch itself (a process per case is slow).
            sample.set(sample.get() + 1);
            if sample.get() % 4 == 0 {
                prop_assert!(
                    gnu_patch_accepts(d.path(), &diff),
                    "GNU patch refused what we accept:\n{diff}"
                );
            }
            Ok(())
        },
    );
}

fn recipe_errors_are_single_lines(text: &str) -> Result<(), TestCaseError> {
    let path = Path::new("tests/recipes/bad/fuzz.toml");
    if let Err(errs) = Recipe::parse(path, text) {
        prop_assert!(!errs.0.is_empty());
        for d in &errs.0 {
            prop_assert!(d.line >= 1 && d.col >= 1, "{d}");
            prop_assert!(!d.to_string().contains('\n'), "multi-line diagnostic {d:?}");
        }
    }
    Ok(())
}

#[test]
fn recipe_parser_never_panics_and_errors_are_single_lines() {
    run(
        "recipe/tomlish",
        4,
        256,
        "[\\[\\]a-z_=\"'{}.,0-9\\- \n#$()/\\\\\u{2028}\u{202e}\t]{0,400}",
        |t| recipe_errors_are_single_lines(&t),
    );
    // Real recipe text with one hostile string spliced into a value.
    let base = include_str!("recipes/good/corpus-base.toml");
    run(
        "recipe/hostile-values",
        5,
        256,
        (
            0usize..base.len(),
            "\\PC{0,10}|[\u{0}-\u{1f}\u{7f}\u{2028}\u{2029}\u{202a}-\u{202e}\u{200b}\"\\\\]{1,4}",
        ),
        |(at, ins)| {
            let mut at = at;
            while !base.is_char_boundary(at) {
                at -= 1;
            }
            let t = format!("{}{}{}", &base[..at], ins, &base[at..]);
            recipe_errors_are_single_lines(&t)
        },
    );
}

fn kernel_list_ok(t: &str) -> Result<(), TestCaseError> {
    match parse_kernel_list("k.txt", t) {
        Ok(v) => {
            let lines = t
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
                .count();
            prop_assert_eq!(v.len(), lines);
        }
        Err(e) => {
            let e = e.to_string();
            prop_assert!(!e.contains('\n'), "multi-line error {e:?}");
            prop_assert!(e.starts_with("k.txt:"), "{e}");
        }
    }
    Ok(())
}

#[test]
fn kernel_list_parser_never_panics_and_errors_name_the_line() {
    run(
        "kernel-list/arbitrary",
        6,
        512,
        "\\PC{0,300}|(\\PC{0,40}\n){0,20}",
        |t| kernel_list_ok(&t),
    );
    let release =
        "[0-9]\\.[0-9]{1,2}\\.[0-9]{1,3}-[0-9]{1,4}(\\.[0-9]{1,2})?\\.(el7|el8|al8)\\.x86_64";
    run(
        "kernel-list/releases",
        7,
        256,
        proptest::collection::vec(
            prop_oneof![
                proptest::string::string_regex(release).unwrap(),
                Just("# comment".to_string()),
                Just(String::new()),
                "[ \t]{0,3}",
            ],
            0..40,
        ),
        |lines| kernel_list_ok(&lines.join("\n")),
    );
}
