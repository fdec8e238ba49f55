//! The OpenPGP signing key and its passphrase reach every command one way
//! (`keys::PassphraseSource`, `keys::pgp_key_path`): `KHOTFIX_GPG_KEY` and
//! `KHOTFIX_SIGN_PASSPHRASE` (or `--passphrase-file`). The former names
//! `KHOTFIX_PGP_KEY` and `KHOTFIX_GPG_PASSPHRASE` still work, with a warning
//! on stderr; a wrong passphrase fails before the repository changes and is
//! never echoed.
//!
//! Tools: gpg (a passphrase-protected RSA key), rpm (repo verify).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PASSPHRASE: &str = "correct horse";
const VARS: [&str; 4] = [
    "KHOTFIX_GPG_KEY",
    "KHOTFIX_PGP_KEY",
    "KHOTFIX_SIGN_PASSPHRASE",
    "KHOTFIX_GPG_PASSPHRASE",
];

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// A khotfix command with none of the signing variables inherited.
fn khotfix(env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_khotfix"));
    for v in VARS {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// A passphrase-protected RSA OpenPGP secret key, armored, made by gpg.
fn protected_key(dir: &Path) -> PathBuf {
    let home = dir.join("gnupg");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let pw = home.join("pw");
    std::fs::write(&pw, format!("{PASSPHRASE}\n")).unwrap();
    let gpg = |args: &[&str]| {
        let o = run(Command::new("gpg")
            .env("GNUPGHOME", &home)
            .args([
                "--batch",
                "--pinentry-mode",
                "loopback",
                "--passphrase-file",
            ])
            .arg(&pw)
            .args(args));
        assert!(
            o.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    };
    gpg(&[
        "--quick-gen-key",
        "Env Test <env@khotfix.invalid>",
        "rsa2048",
        "sign",
        "never",
    ]);
    let secret = gpg(&["--armor", "--export-secret-keys", "env@khotfix.invalid"]);
    let path = dir.join("secret.asc");
    std::fs::write(&path, secret).unwrap();
    path
}

fn publish(repo: &Path, env: &[(&str, &str)], extra: &[&str]) -> Output {
    run(khotfix(env)
        .args(["publish", "--repo"])
        .arg(repo)
        .args(extra))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn one_key_variable_and_one_passphrase_source_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let key = protected_key(dir.path());
    let key_s = key.to_str().unwrap();
    let repo = dir.path().join("repo");

    // The documented names: no warning.
    let o = publish(
        &repo,
        &[
            ("KHOTFIX_GPG_KEY", key_s),
            ("KHOTFIX_SIGN_PASSPHRASE", PASSPHRASE),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    let v = run(khotfix(&[]).args(["repo", "verify"]).arg(&repo));
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    let repomd = std::fs::read(repo.join("repodata/repomd.xml")).unwrap();

    // A wrong passphrase: one line naming the key file, never the
    // passphrase, and the repository unchanged.
    let wrong = "wrong horse battery";
    let o = publish(
        &repo,
        &[
            ("KHOTFIX_GPG_KEY", key_s),
            ("KHOTFIX_SIGN_PASSPHRASE", wrong),
        ],
        &[],
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains(key_s) && e.contains("passphrase"), "{e}");
    assert!(!e.contains(wrong) && !e.contains(PASSPHRASE), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert_eq!(
        std::fs::read(repo.join("repodata/repomd.xml")).unwrap(),
        repomd
    );

    // --passphrase-file takes precedence over the variable.
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{PASSPHRASE}\n")).unwrap();
    let o = publish(
        &repo,
        &[("KHOTFIX_SIGN_PASSPHRASE", wrong)],
        &[
            "--gpg-key",
            key_s,
            "--passphrase-file",
            pw.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    // The former names still work, each with a warning naming both
    // variables (and not the values).
    let o = publish(
        &repo,
        &[
            ("KHOTFIX_PGP_KEY", key_s),
            ("KHOTFIX_GPG_PASSPHRASE", PASSPHRASE),
        ],
        &[],
    );
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains("KHOTFIX_GPG_PASSPHRASE is deprecated; set KHOTFIX_SIGN_PASSPHRASE"),
        "{e}"
    );
    assert!(
        e.contains("KHOTFIX_PGP_KEY is deprecated; set KHOTFIX_GPG_KEY"),
        "{e}"
    );
    assert!(!e.contains(PASSPHRASE), "{e}");

    // `package` names the same variable when no key is given.
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/bpf-lru-leak-22519882.toml");
    let o = run(khotfix(&[])
        .arg("package")
        .arg(&recipe)
        .arg("--build-dir")
        .arg(dir.path()));
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("--pgp-key") && e.contains("KHOTFIX_GPG_KEY"),
        "{e}"
    );
}
