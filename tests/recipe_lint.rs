//! `khotfix recipe lint` on the bad-recipe corpus (tests/recipes/bad: one
//! defect each) and on the good recipes, through the real binary; plus
//! property tests that drive `Recipe::parse` with arbitrary and mutated input.

mod support;

use support::bin::khotfix;

use khotfix::kernel::KernelRelease;
use khotfix::patchfile::Patch;
use khotfix::recipe::Recipe;
use proptest::prelude::*;
use regex::Regex;
use std::path::{Path, PathBuf};

fn tomls(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

/// The `# expect: ...` line of a corpus recipe: a fragment the error must contain.
fn expectation(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("# expect: "))
        .map(str::trim)
}

#[test]
fn every_bad_recipe_gets_one_located_line_and_exit_2() {
    let bad = tomls("tests/recipes/bad");
    assert!(bad.len() >= 20, "only {} bad recipes", bad.len());
    let mut failures = Vec::new();
    for path in &bad {
        let text = std::fs::read_to_string(path).expect("read corpus recipe");
        let out = khotfix()
            .args(["recipe", "lint"])
            .arg(path)
            .output()
            .expect("run khotfix");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let shown = path.display().to_string();
        let located =
            Regex::new(&format!(r"^{}:(\d+):(\d+): (.+)$", regex::escape(&shown))).expect("regex");
        let lines: Vec<&str> = stderr.lines().collect();
        let mut why = Vec::new();
        if out.status.code() != Some(2) {
            why.push(format!("exit code {:?}, want 2", out.status.code()));
        }
        if lines.len() != 1 {
            why.push(format!("{} stderr lines, want exactly 1", lines.len()));
        }
        if stderr.contains("panicked") {
            why.push("panicked".into());
        }
        if !out.stdout.is_empty() {
            why.push("wrote to stdout".into());
        }
        match lines.first().and_then(|l| located.captures(l)) {
            None => why.push("first line is not `file:line:col: message`".into()),
            Some(c) => {
                let line: usize = c[1].parse().unwrap_or(0);
                let col: usize = c[2].parse().unwrap_or(0);
                let n = text.lines().count();
                if line == 0 || line > n.max(1) || col == 0 {
                    why.push(format!(
                        "location {line}:{col} is outside the file ({n} lines)"
                    ));
                }
                if let Some(want) = expectation(&text) {
                    if !c[3].contains(want) {
                        why.push(format!("message does not mention {want:?}"));
                    }
                }
            }
        }
        if !why.is_empty() {
            failures.push(format!("{shown}: {}\n  stderr: {stderr:?}", why.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad recipes misreported:\n{}",
        failures.len(),
        bad.len(),
        failures.join("\n")
    );
}

#[test]
fn good_recipes_lint_clean() {
    let mut good = tomls("recipes");
    assert!(good.len() >= 2, "recipes/ should hold the two seed recipes");
    good.extend(tomls("tests/recipes/good"));
    let out = khotfix()
        .args(["recipe", "lint"])
        .args(&good)
        .output()
        .expect("run khotfix");
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn lint_reports_every_file_and_fails_if_any_is_bad() {
    let out = khotfix()
        .args([
            "recipe",
            "lint",
            "recipes/ipvs-estimation-timer.toml",
            "tests/recipes/bad/unknown-distro.toml",
            "tests/recipes/bad/inverted-range.toml",
        ])
        .output()
        .expect("run khotfix");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(stderr
        .lines()
        .any(|l| l.starts_with("tests/recipes/bad/unknown-distro.toml:")));
    assert!(stderr
        .lines()
        .any(|l| l.starts_with("tests/recipes/bad/inverted-range.toml:")));
}

#[test]
fn lint_json_lists_diagnostics() {
    let out = khotfix()
        .args([
            "recipe",
            "lint",
            "--json",
            "recipes/bpf-lru-leak-22519882.toml",
            "tests/recipes/bad/name-space.toml",
        ])
        .output()
        .expect("run khotfix");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("lint --json is JSON");
    assert_eq!(v["ok"], false);
    let d = v["diagnostics"].as_array().expect("diagnostics");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["file"], "tests/recipes/bad/name-space.toml");
    assert!(d[0]["line"].as_u64() > Some(0) && d[0]["col"].as_u64() > Some(0));
    assert!(d[0]["message"]
        .as_str()
        .is_some_and(|m| m.contains("contains ' '")));
    let out = khotfix()
        .args([
            "recipe",
            "lint",
            "--json",
            "recipes/ipvs-estimation-timer.toml",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v, serde_json::json!({"ok": true, "diagnostics": []}));
}

#[test]
fn unreadable_recipe_is_a_located_error() {
    let out = khotfix()
        .args(["recipe", "lint", "tests/recipes/bad/no-such-recipe.toml"])
        .output()
        .expect("run khotfix");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("tests/recipes/bad/no-such-recipe.toml:1:1: cannot read recipe"),
        "{stderr}"
    );
}

#[test]
fn seed_recipes_load_with_expected_values() {
    let r = Recipe::load(Path::new("recipes/bpf-lru-leak-22519882.toml")).expect("bpf recipe");
    assert_eq!(r.hotfix.id, 22519882);
    assert_eq!(r.hotfix.module_name(), "kpatch_22519882");
    assert_eq!(r.node.module, "kpatch_22519882");
    assert_eq!(
        r.node.required_paths,
        [
            "/sys/fs/bpf/tc/globals/cilium_ct4_global",
            "/.lifsea/rootfs/sys/fs/bpf/tc/globals/cilium_ct4_global"
        ]
    );
    assert_eq!(r.node.flavors, ["al8"]);
    assert_eq!(r.node.unsupported.len(), 1);
    assert_eq!(
        (
            r.node.unsupported[0].flavor.as_str(),
            r.node.unsupported[0].message.as_str()
        ),
        ("lifsea8", "upgrade to ContainerOS 3.5.1 or later")
    );
    let k = |s: &str| KernelRelease::parse(s).expect("kernel");
    for (rel, affected) in [
        ("5.10.134-14.al8.x86_64", false),
        ("5.10.134-15.al8.x86_64", true),
        ("5.10.134-18.0.1.lifsea8.x86_64", true),
        ("5.10.134-19.1.al8.x86_64", true),
        ("5.10.134-19.2.al8.x86_64", false),
    ] {
        assert_eq!(r.node.affects(&k(rel)), affected, "{rel}");
    }
    assert!(r.targets[0].patches[0].is_absolute() && r.targets[0].patches[0].is_file());

    let r = Recipe::load(Path::new("recipes/ipvs-estimation-timer.toml")).expect("ipvs recipe");
    assert_eq!(r.hotfix.module_file(), "kpatch-30001.ko");
    let deb = r
        .targets
        .iter()
        .find(|t| t.name == "debian12")
        .expect("debian12 target");
    assert!(!deb.publish, "the kbuild cross-check must not ship");
    let src = deb.module_source.as_ref().expect("module source");
    assert!(src.join("livepatch.c").is_file() && src.join("Kbuild").is_file());
    let kbuild = std::fs::read_to_string(src.join("Kbuild")).expect("Kbuild");
    assert!(
        kbuild.contains(&r.hotfix.module_file().replace(".ko", "")),
        "Kbuild must build {}",
        r.hotfix.module_file()
    );
    let el7 = r
        .targets
        .iter()
        .find(|t| t.distro == "centos7")
        .expect("centos7 target");
    let diff = std::fs::read_to_string(&el7.patches[0]).expect("patch");
    let p = Patch::parse(&diff).expect("valid diff");
    assert_eq!(p.files[0].path, "net/netfilter/ipvs/ip_vs_est.c");
    assert!(diff.contains("static void estimation_timer(unsigned long arg)"));
    let deb_kpatch = r
        .targets
        .iter()
        .find(|t| t.name == "debian12-kpatch")
        .expect("debian12-kpatch target");
    assert!(deb_kpatch.publish && deb_kpatch.backend == khotfix::recipe::Backend::Kpatch);
    let diff = std::fs::read_to_string(&deb_kpatch.patches[0]).expect("patch");
    let p = Patch::parse(&diff).expect("valid diff");
    assert_eq!(p.files[0].path, "net/netfilter/ipvs/ip_vs_est.c");
    assert!(diff.contains("static void estimation_timer(struct timer_list *t)"));
}

#[test]
fn readme_annotated_example_is_a_valid_recipe_with_every_key() {
    let readme = std::fs::read_to_string("README.md").expect("README.md");
    let start = readme
        .find("```toml\n[hotfix]")
        .expect("annotated recipe example in README")
        + "```toml\n".len();
    let len = readme[start..].find("```").expect("end of example");
    let example = &readme[start..start + len];
    // Parsed as if it lived in recipes/, so its paths resolve from the repository root.
    let r = Recipe::parse(Path::new("recipes/readme-example.toml"), example)
        .unwrap_or_else(|e| panic!("README example: {e}"));
    assert_eq!(r.hotfix.id, 22519882);
    for key in [
        "id",
        "name",
        "summary",
        "description",
        "version",
        "backend",
        "date",
        "author",
        "text",
        "distro",
        "kernels",
        "ranges",
        "exclude",
        "select",
        "patches",
        "module_source",
        "skip_compiler_check",
        "publish",
        "required_paths",
        "flavors",
        "unsupported",
        "flavor",
        "message",
        "module",
    ] {
        assert!(
            example.contains(&format!("\n{key} = "))
                || example.contains(&format!("# {key} = "))
                || example.contains(&format!("{{ {key} = "))
                || example.contains(&format!(", {key} = ")),
            "README example does not show `{key}`"
        );
    }
}

/// Small edits of real recipe text: cut, duplicate, insert, replace.
fn mutated(text: &str, ops: &[(u8, usize, String)]) -> String {
    let mut s: Vec<char> = text.chars().collect();
    for (op, at, ins) in ops {
        let at = if s.is_empty() { 0 } else { at % (s.len() + 1) };
        match op % 4 {
            0 => {
                let end = (at + ins.len() % 40).min(s.len());
                s.drain(at..end);
            }
            1 => s.splice(at..at, ins.chars()).for_each(drop),
            2 => {
                let end = (at + 30).min(s.len());
                let dup: Vec<char> = s[at..end].to_vec();
                s.splice(at..at, dup).for_each(drop);
            }
            _ => {
                if at < s.len() {
                    s[at] = ins.chars().next().unwrap_or('"');
                }
            }
        }
    }
    s.into_iter().collect()
}

fn check_no_panic_and_sane(text: &str) -> Result<(), TestCaseError> {
    // The path decides where patches are looked up: inside the corpus root.
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_arbitrary_text(text in any::<String>()) {
        check_no_panic_and_sane(&text)?;
    }

    #[test]
    fn parse_never_panics_on_tomlish_text(text in "[\\[\\]a-z_=\"'{}.,0-9\\- \n#$()/\\\\]{0,300}") {
        check_no_panic_and_sane(&text)?;
    }

    #[test]
    fn parse_never_panics_on_mutated_real_recipes(
        which in 0usize..4,
        ops in proptest::collection::vec((any::<u8>(), any::<usize>(), "\\PC{0,12}"), 1..6),
    ) {
        let sources = [
            include_str!("../recipes/bpf-lru-leak-22519882.toml"),
            include_str!("../recipes/ipvs-estimation-timer.toml"),
            include_str!("recipes/good/corpus-base.toml"),
            include_str!("recipes/good/corpus-kbuild.toml"),
        ];
        check_no_panic_and_sane(&mutated(sources[which], &ops))?;
    }

    #[test]
    fn kernel_parse_never_panics(s in "\\PC{0,40}|[0-9.a-z_~+-]{0,40}") {
        let _ = KernelRelease::parse(&s);
    }

    #[test]
    fn patch_parse_never_panics(s in "((---|\\+\\+\\+|@@ -[0-9,]{0,6} \\+[0-9,]{0,6} @@| |-|\\+|\\\\)[a-z/. ]{0,12}\n){0,20}") {
        let _ = Patch::parse(&s);
    }
}
