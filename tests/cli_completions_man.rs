//! `khotfix completions` and `khotfix man` (issue 18): the bash completion
//! is loaded into a real bash and asked what `khotfix pu<TAB>` completes to
//! (through the function `complete -p khotfix` registered, the way
//! readline calls it); every generated man page renders with `man -l`
//! (man-db and groff, all groff warnings on) without a single warning; zsh
//! and fish scripts are produced and parse in their own shells when those
//! are installed.

mod support;

use std::path::Path;
use std::process::Command;

fn khotfix(args: &[&str]) -> std::process::Output {
    support::bin::khotfix().args(args).output().unwrap()
}

fn completion_script(shell: &str) -> String {
    let o = khotfix(&["completions", shell]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// What bash's registered completion for `khotfix` offers for `line` (the
/// word being completed is the last one; an empty last word completes a
/// new word).
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let program = format!(
        r#"
set -eu
. "$1"
spec=$(complete -p khotfix)
func=$(printf '%s\n' "$spec" | sed -n 's/.*-F \([^ ]*\).*/\1/p')
[ -n "$func" ] || {{ echo "no completion function in: $spec" >&2; exit 3; }}
COMP_LINE={line:?}
COMP_POINT=${{#COMP_LINE}}
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_TYPE=9
COMP_KEY=9
"$func" khotfix "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
        words = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let o = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program, "bash"])
        .arg(script)
        .output()
        .expect("bash");
    assert!(
        o.status.success(),
        "bash completion failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_subcommands_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("khotfix.bash");
    std::fs::write(&script, completion_script("bash")).unwrap();
    assert_eq!(bash_complete(&script, &["khotfix", "pu"]), ["publish"]);
    // Nested subcommands and long options come from the same definitions.
    assert_eq!(
        bash_complete(&script, &["khotfix", "node", "da"]),
        ["daemonset"]
    );
    let run_opts = bash_complete(&script, &["khotfix", "run", "--expect-p"]);
    assert_eq!(run_opts, ["--expect-plan"]);
    let all = bash_complete(&script, &["khotfix", ""]);
    for c in ["plan", "run", "publish", "completions", "man"] {
        assert!(all.iter().any(|w| w == c), "{c} not offered: {all:?}");
    }
}

#[test]
fn zsh_and_fish_scripts_are_generated() {
    let zsh = completion_script("zsh");
    assert!(zsh.starts_with("#compdef khotfix"), "{}", &zsh[..80]);
    let fish = completion_script("fish");
    assert!(fish.contains("complete -c khotfix"));
    // Syntax-check with the real shells where this machine has them.
    for (shell, text, check) in [("zsh", &zsh, "-n"), ("fish", &fish, "--no-execute")] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(shell);
        std::fs::write(&p, text).unwrap();
        match Command::new(shell).arg(check).arg(&p).output() {
            Ok(o) => assert!(
                o.status.success(),
                "{shell} {check}: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(_) => eprintln!("{shell} syntax check skipped: {shell} is not installed"),
        }
    }
    let o = khotfix(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn man_pages_render_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    let o = khotfix(&["man", pages.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut names: Vec<String> = std::fs::read_dir(&pages)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    // One page per command and subcommand, as printed.
    assert_eq!(
        String::from_utf8(o.stdout).unwrap().lines().count(),
        names.len()
    );
    for n in [
        "khotfix.1",
        "khotfix-run.1",
        "khotfix-publish.1",
        "khotfix-node-check.1",
        "khotfix-node-daemonset.1",
        "khotfix-completions.1",
        "khotfix-man.1",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing: {names:?}");
    }
    for n in &names {
        let o = Command::new("man")
            .args(["--warnings=w", "-l"])
            .arg(pages.join(n))
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_FORMATTING", "0")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .expect("man (man-db, see .ci/packages.txt)");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && stderr.is_empty(), "{n}: {stderr}");
        let text = without_overstrike(&String::from_utf8_lossy(&o.stdout));
        let cmd = n.trim_end_matches(".1");
        assert!(text.contains("NAME") && text.contains(cmd), "{n}:\n{text}");
    }
    // The run page documents the plan guard.
    let run = std::fs::read_to_string(pages.join("khotfix-run.1")).unwrap();
    assert!(run.contains("expect\\-plan"), "{run}");
}

/// grotty's bold and underline (`X\bX`, `_\bX`) as plain text.
fn without_overstrike(s: &str) -> String {
    let mut out: Vec<char> = Vec::new();
    for c in s.chars() {
        if c == '\u{8}' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out.into_iter().collect()
}

#[test]
fn man_into_an_unwritable_place_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let o = khotfix(&["man", file.join("sub").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("a-file"), "{err}");
}
