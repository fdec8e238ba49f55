//! Hostile recipe values never reach the generated script unescaped: they are
//! refused by validation, or quoted so that running the script prints them
//! verbatim and executes nothing.

mod support;

use support::bin::khotfix;
use support::node_bins;

use std::path::Path;
use std::process::Command;

use support::node::RECIPE;

/// The test recipe with its `[node]` table replaced.
fn recipe_with_node(dir: &Path, node: &str) -> std::path::PathBuf {
    let base = std::fs::read_to_string(RECIPE).unwrap();
    let head = &base[..base.find("[node]").unwrap()];
    let p = dir.join("hostile.toml");
    std::fs::write(&p, format!("{head}{node}")).unwrap();
    p
}

fn hostile_message(canary: &Path) -> String {
    let c = canary.display();
    format!(
        r#"upgrade now'; touch {c}; echo ' $(touch {c}) `touch {c}` "; touch {c}; " \c %s %n ${{HOME}} && touch {c} | touch {c}"#
    )
}

#[test]
fn hostile_message_is_printed_verbatim_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary");
    let msg = hostile_message(&canary);
    let toml_msg = toml::Value::String(msg.clone()).to_string();
    let recipe = recipe_with_node(
        dir.path(),
        &format!(
            "[node]\nrequired_paths = [\"/sys/fs/bpf/tc/globals/cilium_ct4_global\"]\nflavors = [\"al8\"]\nunsupported = [{{ flavor = \"lifsea8\", message = {toml_msg} }}]\nmodule = \"kpatch_22519882\"\nranges = [{{ from = \"5.10.134-15\", to = \"5.10.134-19.1\" }}]\n"
        ),
    );
    let script = dir.path().join("s.sh");
    support::node::script(&recipe, &script);

    let sc = Command::new("shellcheck")
        .args(["-s", "sh"])
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        sc.status.success(),
        "shellcheck: {}",
        String::from_utf8_lossy(&sc.stdout)
    );

    let root = tempfile::tempdir().unwrap();
    for (p, t) in [
        (
            "proc/sys/kernel/osrelease",
            "5.10.134-18.0.1.lifsea8.x86_64\n",
        ),
        ("proc/modules", ""),
        ("sys/fs/bpf/tc/globals/cilium_ct4_global", ""),
    ] {
        let f = root.path().join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, t).unwrap();
    }
    for sh in ["dash", "bash", "busybox"] {
        let mut cmd = Command::new(sh);
        if sh == "busybox" {
            cmd.arg("sh");
        }
        let out = cmd
            .arg(&script)
            .env("KHOTFIX_ROOT", root.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{sh}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&msg),
            "{sh}: message not printed verbatim: {stdout}"
        );
        assert!(
            !canary.exists(),
            "{sh}: the hostile message executed a command"
        );
    }
    // node check prints the same line.
    let out = node_bins::both()
        .args(["check", "--recipe"])
        .arg(&recipe)
        .arg("--root")
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&msg));
    assert!(!canary.exists());
}

#[test]
fn hostile_values_are_refused_when_loading() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("newline in message", "[node]\nflavors = [\"al8\"]\nunsupported = [{ flavor = \"lifsea8\", message = \"a\\n; touch /tmp/x\" }]\n"),
        ("command substitution in a path", "[node]\nrequired_paths = [\"/sys/$(touch /tmp/x)\"]\nflavors = [\"al8\"]\n"),
        ("quote in a path", "[node]\nrequired_paths = [\"/sys/a'b\"]\nflavors = [\"al8\"]\n"),
        ("semicolon in a flavor", "[node]\nflavors = [\"al8;reboot\"]\n"),
        ("backtick in an unsupported flavor", "[node]\nflavors = [\"al8\"]\nunsupported = [{ flavor = \"`id`\", message = \"x\" }]\n"),
        ("space in the module", "[node]\nflavors = [\"al8\"]\nmodule = \"kpatch x\"\n"),
        ("shell in a kernel bound", "[node]\nflavors = [\"al8\"]\nranges = [{ from = \"5.10.134-15\", to = \"5.10.134-$(id)\" }]\n"),
        ("path traversal", "[node]\nrequired_paths = [\"/sys/../etc/shadow\"]\nflavors = [\"al8\"]\n"),
    ];
    for (what, node) in cases {
        let recipe = recipe_with_node(dir.path(), node);
        for cmd in [vec!["node", "script"], vec!["node", "daemonset"]] {
            let out = khotfix().args(&cmd).arg(&recipe).output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{what}: {cmd:?} accepted it");
            assert!(
                out.stdout.is_empty(),
                "{what}: {cmd:?} wrote a script anyway"
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.starts_with("khotfix: error: ") && err.contains("hostile.toml:"),
                "{what}: {err}"
            );
            assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err}");
        }
    }
}

/// The generator re-validates: a recipe value that bypassed `Recipe::load`
/// is still refused.
#[test]
fn generator_revalidates_values() {
    let base = khotfix::recipe::Recipe::load_for_node(Path::new(RECIPE)).unwrap();
    assert!(khotfix::node::script::generate(&base).is_ok());
    let mut r = base.clone();
    r.node.module = "kpatch_1; reboot".into();
    assert!(khotfix::node::script::generate(&r).is_err());
    let mut r = base.clone();
    r.node.unsupported[0].message = "line one\nreboot".into();
    assert!(khotfix::node::script::generate(&r).is_err());
    let mut r = base.clone();
    r.node.required_paths.push("/x/$(reboot)".into());
    assert!(khotfix::node::script::generate(&r).is_err());
    let mut r = base;
    r.node.flavors.push("a'b".into());
    assert!(khotfix::node::script::generate(&r).is_err());
}
