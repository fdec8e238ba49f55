//! Preflight: each small patch under tests/data/preflight/ is made to show one
//! thing kpatch cannot handle; it must be flagged with exactly that category,
//! and the clean patch (the seed's IPVS estimation_timer fix) with nothing.

use khotfix::prepare::preflight::{analyze_file, Category, Severity};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/preflight")
        .join(name)
}

const ALL: &[(&str, Category, Severity)] = &[
    ("data-layout", Category::DataLayout, Severity::Error),
    ("global-data", Category::GlobalData, Severity::Error),
    ("header", Category::Header, Severity::Warning),
    ("init-code", Category::InitCode, Severity::Error),
    ("static-local", Category::StaticLocal, Severity::Warning),
    ("once-macro", Category::OnceMacro, Severity::Error),
    ("inline", Category::Inline, Severity::Warning),
    ("notrace", Category::Notrace, Severity::Error),
    ("data-section", Category::DataSection, Severity::Error),
    (
        "exported-symbol",
        Category::ExportedSymbol,
        Severity::Warning,
    ),
    ("new-include", Category::NewInclude, Severity::Warning),
    ("jump-label", Category::JumpLabel, Severity::Warning),
    ("static-call", Category::StaticCall, Severity::Warning),
    ("syscall", Category::Syscall, Severity::Warning),
    ("lib", Category::Lib, Severity::Error),
    ("assembly", Category::Assembly, Severity::Error),
    ("vdso", Category::Vdso, Severity::Error),
    ("realmode", Category::Realmode, Severity::Error),
    ("not-kernel-code", Category::NotKernelCode, Severity::Error),
    ("build-file", Category::BuildFile, Severity::Warning),
];

#[test]
fn each_category_patch_flags_exactly_its_category() {
    let mut failures = Vec::new();
    for (name, cat, sev) in ALL {
        assert_eq!(cat.name(), *name, "file name and category name agree");
        let findings = analyze_file(&data(&format!("{name}.patch"))).unwrap();
        let cats: BTreeSet<_> = findings.iter().map(|f| f.category).collect();
        if cats != BTreeSet::from([*cat]) {
            failures.push(format!(
                "{name}.patch: expected only [{name}], got {findings:#?}"
            ));
            continue;
        }
        for f in &findings {
            assert_eq!(f.severity, *sev, "{name}: {f}");
            assert!(!f.why.is_empty() && !f.instead.is_empty());
            assert!(!f.why.contains('\n') && !f.instead.contains('\n'));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_category_has_a_test_patch() {
    let files: BTreeSet<String> = std::fs::read_dir(data(""))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".patch")
                .to_string()
        })
        .collect();
    for (name, _, _) in ALL {
        assert!(
            files.contains(*name),
            "missing tests/data/preflight/{name}.patch"
        );
    }
    assert!(files.contains("clean"));
    assert_eq!(
        files.len(),
        ALL.len() + 1,
        "a patch without a test entry: {files:?}"
    );
}

#[test]
fn clean_patch_flags_nothing() {
    let findings = analyze_file(&data("clean.patch")).unwrap();
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn findings_point_at_the_changed_line() {
    // once-macro.patch: the pr_warn_once line.
    let f = &analyze_file(&data("once-macro.patch")).unwrap()[0];
    let text = std::fs::read_to_string(data("once-macro.patch")).unwrap();
    let line = text.lines().nth(f.line - 1).unwrap();
    assert!(
        line.starts_with('+') && line.contains("pr_warn_once"),
        "line {}: {line}",
        f.line
    );
    assert_eq!(f.file, "net/netfilter/ipvs/ip_vs_est.c");
    // data-layout.patch: the added member.
    let f = &analyze_file(&data("data-layout.patch")).unwrap()[0];
    let text = std::fs::read_to_string(data("data-layout.patch")).unwrap();
    assert!(text.lines().nth(f.line - 1).unwrap().contains("skipped"));
    assert!(f.why.contains("ip_vs_estimator"), "{}", f.why);
    // init-code.patch: only the __init function, not the __net_init one
    // (pernet init runs again for every new network namespace).
    let fs = analyze_file(&data("init-code.patch")).unwrap();
    assert_eq!(fs.len(), 1, "{fs:#?}");
    assert_eq!(fs[0].file, "net/netfilter/ipvs/ip_vs_core.c");
    assert!(fs[0].why.contains("ip_vs_init()"), "{}", fs[0].why);
}

#[test]
fn human_format_is_one_line() {
    let f = &analyze_file(&data("lib.patch")).unwrap()[0];
    let s = f.to_string();
    assert!(!s.contains('\n'));
    assert!(
        s.contains(&format!(
            "lib.patch:{}: error: [lib] lib/string.c: ",
            f.line
        )),
        "{s}"
    );
    assert!(s.contains(" — instead: "), "{s}");
}

#[test]
fn garbage_is_bad_input() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x.patch");
    std::fs::write(&p, "not a diff\n").unwrap();
    let e = analyze_file(&p).unwrap_err().to_string();
    assert!(
        e.contains("x.patch") && e.contains("not a valid unified diff"),
        "{e}"
    );
}
