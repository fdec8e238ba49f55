//! Issue 16, items 1 and 2: recipe text is never interpreted on its way to a
//! node, neither as the script template, as shell, nor as YAML structure.
//!
//! * The script is filled in one pass: a message or required path holding
//!   every placeholder name, quotes, `$()`, backticks stays literal text; the
//!   script parses (sh -n, dash -n, bash -n, shellcheck), prints the same line
//!   and exit code as `node check`, and is no longer than with plain values.
//! * Line and paragraph separators (U+2028/U+2029), NEL, bidi overrides and
//!   other non-printing characters are refused by every node command.
//! * The DaemonSet manifest is written by a YAML serializer: PyYAML's
//!   `safe_load_all` reads exactly the five objects, with the ConfigMap's
//!   `hotfix.sh` byte-identical to `node script`, for hostile messages; and
//!   the serializer keeps any string (U+2028 included) inside its scalar.

mod support;

use support::yaml::pyyaml;

use support::bin::khotfix;

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::node_bins;

use support::node::RECIPE;

/// Every placeholder name the script template has (or had).
const PLACEHOLDERS: &[&str] = &[
    "@@ID@@",
    "@@MODULE@@",
    "@@PATHS_TEXT@@",
    "@@COVERED@@",
    "@@AFFECTED@@",
    "@@RANGES@@",
    "@@KERNELS@@",
    "@@FLAVOR_CASES@@",
    "@@MESSAGE_CASES@@",
    "@@PATH_LOOP@@",
    "@@AWK@@",
    "@@VALUE_CAP@@",
    "@@MODULES_CAP@@",
    "@@RPMDB_CAP@@",
];

/// The test recipe with its `[node]` table replaced.
fn recipe_with(dir: &Path, paths: &[String], message: &str) -> PathBuf {
    let base = std::fs::read_to_string(RECIPE).unwrap();
    let head = &base[..base.find("[node]").unwrap()];
    let paths = toml::Value::Array(
        paths
            .iter()
            .map(|p| toml::Value::String(p.clone()))
            .collect(),
    );
    let msg = toml::Value::String(message.into());
    let node = format!(
        "[node]\nrequired_paths = {paths}\nflavors = [\"al8\"]\nunsupported = [{{ flavor = \"lifsea8\", message = {msg} }}]\nmodule = \"kpatch_22519882\"\nranges = [{{ from = \"5.10.134-15\", to = \"5.10.134-19.1\" }}]\n"
    );
    let p = dir.join("hostile.toml");
    std::fs::write(&p, format!("{head}{node}")).unwrap();
    p
}

fn script_text(recipe: &Path) -> String {
    let out = khotfix()
        .args(["node", "script"])
        .arg(recipe)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "node script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn write(root: &Path, host: &str, text: &str) {
    let p = root.join(host.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// (exit code, stdout) of `node check`, and of the script under dash.
fn both(recipe: &Path, script: &Path, root: &Path) -> ((i32, String), (i32, String)) {
    let c = node_bins::both()
        .args(["check", "--recipe"])
        .arg(recipe)
        .arg("--root")
        .arg(root)
        .output()
        .unwrap();
    let s = Command::new("dash")
        .arg(script)
        .env("KHOTFIX_ROOT", root)
        .output()
        .unwrap();
    (
        (
            c.status.code().unwrap(),
            String::from_utf8_lossy(&c.stdout).into_owned(),
        ),
        (s.status.code().unwrap(), verdict_line(&s.stdout)),
    )
}

/// The script's verdict: its last line, without the dry run's prefix (the
/// lines before it list the steps a dry run would take).
fn verdict_line(stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdout);
    let last = text.lines().last().unwrap_or_default();
    format!("{}\n", last.strip_prefix("dry run: ").unwrap_or(last))
}

fn hostile_messages(canary: &Path) -> Vec<String> {
    let c = canary.display();
    let all = PLACEHOLDERS.join(" ");
    vec![
        format!("upgrade {all}"),
        format!(
            "@@AWK@@'; touch {c}; ' $(touch {c}) `touch {c}` \"$(touch {c})\" ${{HOME}} \\ %s %n"
        ),
        format!("{}@@@@{}", PLACEHOLDERS[9], PLACEHOLDERS[7]),
        "@@".into(),
        "@@@".into(),
        "@@NOT_A_NAME@@ @@ @@AWK".into(),
        "'".into(),
        "'\\''".into(),
        format!("'$(touch {c})'"),
    ]
}

fn hostile_paths() -> Vec<String> {
    let mut v: Vec<String> = PLACEHOLDERS.iter().map(|p| format!("/sys/{p}")).collect();
    v.push("/x/@@PATH_LOOP@@@@AWK@@".into());
    v.push("/@@MESSAGE_CASES@@:@@FLAVOR_CASES@@".into());
    v
}

/// Exit status and output of a syntax checker on the script.
fn syntax_ok(cmd: &str, args: &[&str], script: &Path) {
    let out = Command::new(cmd).args(args).arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn placeholder_names_in_values_are_not_expanded() {
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary");
    let plain = script_text(&recipe_with(
        dir.path(),
        &["/sys/fs/bpf/x".into()],
        "upgrade to ContainerOS 3.5.1",
    ));
    let paths = hostile_paths();
    for msg in hostile_messages(&canary) {
        let recipe = recipe_with(dir.path(), &paths, &msg);
        let text = script_text(&recipe);
        // The awk program appears once; the script grew only by the values.
        assert_eq!(text.matches("function vercmp(").count(), 1, "{msg}");
        let values_len: usize =
            paths.iter().map(|p| 2 * p.len() + 8).sum::<usize>() + 2 * msg.len();
        assert!(
            text.len() < plain.len() + values_len + 64,
            "{msg}: script grew from {} to {} bytes",
            plain.len(),
            text.len()
        );
        let script = dir.path().join("s.sh");
        std::fs::write(&script, &text).unwrap();
        syntax_ok("sh", &["-n"], &script);
        syntax_ok("dash", &["-n"], &script);
        syntax_ok("bash", &["-n"], &script);
        syntax_ok("shellcheck", &["-s", "sh"], &script);

        // Unfixable (prints the message), not affected (prints the paths),
        // and needs-hotfix with a hostile path present.
        let roots = tempfile::tempdir().unwrap();
        let lifsea = roots.path().join("lifsea");
        write(
            &lifsea,
            "/proc/sys/kernel/osrelease",
            "5.10.134-18.0.1.lifsea8.x86_64\n",
        );
        write(&lifsea, "/proc/modules", "");
        write(&lifsea, &paths[10], "");
        let none = roots.path().join("none");
        write(
            &none,
            "/proc/sys/kernel/osrelease",
            "5.10.134-18.al8.x86_64\n",
        );
        let al8 = roots.path().join("al8");
        write(
            &al8,
            "/proc/sys/kernel/osrelease",
            "5.10.134-18.al8.x86_64\n",
        );
        write(&al8, "/proc/modules", "");
        write(&al8, &paths[paths.len() - 1], "");
        for (root, code, first) in [
            (&lifsea, 3, "unfixable: "),
            (
                &none,
                0,
                "not-affected: none of the required paths exist: /sys/@@ID@@, ",
            ),
            (&al8, 1, "needs-hotfix: "),
        ] {
            let (c, s) = both(&recipe, &script, root);
            assert_eq!(c, s, "{msg}: node check and the script differ");
            assert_eq!(c.0, code, "{msg}: {}", c.1);
            assert!(c.1.starts_with(first), "{msg}: {}", c.1);
            assert_eq!(c.1.lines().count(), 1, "{msg}: {}", c.1);
        }
        let (c, _) = both(&recipe, &script, &lifsea);
        assert!(c.1.ends_with(&format!("{msg}\n")), "{msg}: {}", c.1);
        assert!(!canary.exists(), "{msg}: a value executed a command");
    }
}

/// Characters that do not print as themselves on one line.
const NON_PRINTING: &[char] = &[
    '\u{2028}', '\u{2029}', '\u{85}', '\u{202E}', '\u{200B}', '\u{FEFF}', '\u{1B}', '\u{7F}',
    '\u{9B}', '\u{E000}', '\u{FFFE}',
];

#[test]
fn line_separators_and_non_printing_characters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for &c in NON_PRINTING {
        let msg = format!("upgrade{c}---{c}kind: ConfigMap{c}data:{c}  hotfix.sh: reboot");
        let recipe = recipe_with(dir.path(), &["/sys/x".into()], &msg);
        for (bin, cmd) in [
            (node_bins::KHOTFIX, vec!["node", "script"]),
            (node_bins::KHOTFIX, vec!["node", "daemonset"]),
            (
                node_bins::KHOTFIX,
                vec!["node", "check", "--root", "/nonexistent", "--recipe"],
            ),
            (
                node_bins::KHOTFIX_NODE,
                vec!["check", "--root", "/nonexistent", "--recipe"],
            ),
        ] {
            let out = Command::new(bin).args(&cmd).arg(&recipe).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "U+{:04X} {cmd:?}: {err}",
                c as u32
            );
            assert!(
                out.stdout.is_empty(),
                "U+{:04X} {cmd:?} wrote output",
                c as u32
            );
            assert_eq!(err.trim_end().lines().count(), 1, "{err}");
            assert!(err.contains("hostile.toml"), "{err}");
            assert!(
                !err.contains(c),
                "the error line repeats U+{:04X}",
                c as u32
            );
        }
    }
}

/// A recipe that bypassed loading (or a lint that let it pass) is refused
/// by the generators themselves.
#[test]
fn generators_refuse_separators_even_without_lint() {
    let base = khotfix::recipe::Recipe::load_for_node(Path::new(RECIPE)).unwrap();
    for &c in NON_PRINTING {
        let mut r = base.clone();
        r.node.unsupported[0].message = format!("a{c}b");
        assert!(
            khotfix::node::script::generate(&r).is_err(),
            "U+{:04X}",
            c as u32
        );
        let opts = khotfix::node::daemonset::DaemonSetOptions::default();
        assert!(khotfix::node::daemonset::manifest(&r, &opts).is_err());
    }
}

/// Messages that are printable but mean something to YAML or sh.
fn yaml_hostile_messages() -> Vec<String> {
    vec![
        "---\nkind: x".replace('\n', " "),
        "--- !!python/object/apply:os.system ['touch /tmp/x']".into(),
        "... %YAML 1.1 %TAG ! tag:x,2000:".into(),
        "key: value # comment | > &anchor *alias ? : - [a, b] {c: d}".into(),
        "\"double\" 'single' `back` \\ \\n \\u2028".into(),
        "   leading and trailing spaces   ".into(),
        "café — 中文 ✓ 🚀 a\u{A0}b".into(),
        "true".into(),
        "0o555".into(),
        "null".into(),
        "@@AWK@@ @@MESSAGE_CASES@@".into(),
        "|\n".replace('\n', ""),
        "- item".into(),
    ]
}

#[test]
fn manifest_parses_to_the_five_objects_with_the_script_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    for msg in yaml_hostile_messages() {
        let recipe = recipe_with(dir.path(), &hostile_paths(), &msg);
        let script = script_text(&recipe);
        for apply in [false, true] {
            let mut cmd = khotfix();
            cmd.args(["node", "daemonset"]).arg(&recipe);
            if apply {
                cmd.arg("--apply");
            }
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{msg}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let yaml = String::from_utf8(out.stdout).unwrap();
            let docs = pyyaml(&yaml).unwrap_or_else(|e| panic!("{msg}: {e}"));
            let kinds: Vec<&str> = docs
                .iter()
                .map(|d| d["kind"].as_str().unwrap_or("?"))
                .collect();
            assert_eq!(
                kinds,
                [
                    "ServiceAccount",
                    "ClusterRole",
                    "ClusterRoleBinding",
                    "ConfigMap",
                    "DaemonSet"
                ],
                "{msg}"
            );
            assert_eq!(docs[3]["data"].as_object().unwrap().len(), 1, "{msg}");
            assert_eq!(
                docs[3]["data"]["hotfix.sh"].as_str(),
                Some(script.as_str()),
                "{msg}"
            );
            // And exactly the objects khotfix built.
            let r = khotfix::node::check::load_recipe(&recipe).unwrap();
            let opts = khotfix::node::daemonset::DaemonSetOptions {
                apply,
                ..Default::default()
            };
            let objects = khotfix::node::daemonset::objects(&r, &opts).unwrap();
            assert_eq!(docs, objects, "{msg}");
        }
    }
}

/// The serializer itself, fed what lint might let through one day: any
/// string stays one scalar. (The attack: a message with U+2028 made
/// the old emitter's literal block end early and start new documents.)
#[test]
fn yaml_stream_keeps_any_string_inside_its_scalar() {
    let attack = "x\u{2028}---\u{2028}apiVersion: v1\u{2028}kind: ConfigMap\u{2028}data:\u{2028}  hotfix.sh: |\u{2028}    reboot";
    let mut strings: Vec<String> = vec![
        attack.into(),
        format!("#!/bin/sh\necho {attack}\nexit 0\n"),
        "a\u{2029}b\u{85}c\rd\r\ne\tf\u{FEFF}g\u{1B}[31mh\u{7F}\u{0}".into(),
        "trailing space \nnext\n\n\n".into(),
        " leading space\n".into(),
        "\n\nstarts with blank lines".into(),
        "ends without newline\nsecond".into(),
        "---\n...\n--- |\n".into(),
        "\u{FFFE}\u{E000}\u{10FFFF}\u{D7FF}".into(),
    ];
    strings.extend(NON_PRINTING.iter().map(|c| format!("line{c}line\n{c}")));
    for s in &strings {
        let docs = vec![
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "x" }, "data": { "hotfix.sh": s, s.as_str(): s } }),
            json!({ "kind": "List", "items": [s, { "k": s }, [s]] }),
        ];
        let yaml = khotfix::node::daemonset::to_yaml_stream(&docs)
            .unwrap_or_else(|e| panic!("{s:?}: {e:#}"));
        match pyyaml(&yaml) {
            Ok(back) => assert_eq!(back, docs, "{s:?}\n{yaml}"),
            // PyYAML refuses a few code points in any form (U+FFFE, NUL
            // escapes are fine): then it must refuse, never misread.
            Err(e) => assert!(
                s.contains('\u{FFFE}') || s.contains('\u{0}'),
                "{s:?}: PyYAML failed: {e}\n{yaml}"
            ),
        }
    }
}
