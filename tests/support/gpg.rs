//! GnuPG keys for the package-signing tests and rpmsign through them. Each
//! key lives in a temporary GnuPG home of its own, so tests never touch the
//! user's keyring and never share a key by accident.

use super::process::{ok, text};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A temporary GnuPG home with one RSA signing key, exported armored.
pub struct Keys {
    pub _dir: tempfile::TempDir,
    pub home: PathBuf,
    /// The armored secret key (what `khotfix publish --gpg-key` takes).
    pub secret: PathBuf,
    pub fpr: String,
}

/// A new RSA-2048 signing key without passphrase.
pub fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("gnupg");
    private_home(&home);
    ok(gpg(&home)
        .args(["--batch", "--passphrase", "", "--quick-gen-key"])
        .args([
            "khotfix test <test@khotfix.invalid>",
            "rsa2048",
            "sign",
            "never",
        ]));
    let out = ok(gpg(&home).args(["--batch", "--armor", "--export-secret-keys"]));
    let secret = dir.path().join("secret.asc");
    std::fs::write(&secret, &out.stdout).unwrap();
    let fpr = fingerprint(&home, "--list-keys");
    Keys {
        _dir: dir,
        home,
        secret,
        fpr,
    }
}

/// `gpg` on the GnuPG home `home`.
pub fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.env("GNUPGHOME", home);
    c
}

/// Create `home` with the 0700 mode gpg insists on.
pub fn private_home(home: &Path) {
    std::fs::create_dir_all(home).unwrap();
    std::fs::set_permissions(home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
}

/// The fingerprint of the first key `gpg --with-colons LIST` shows
/// (`--list-keys` or `--list-secret-keys`).
fn fingerprint(home: &Path, list: &str) -> String {
    let out = ok(gpg(home).args(["--batch", "--with-colons", list]));
    text(&out.stdout)
        .lines()
        .find(|l| l.starts_with("fpr:"))
        .and_then(|l| l.split(':').nth(9))
        .expect("the key has no fingerprint")
        .to_string()
}

/// Sign packages with rpmsign through the key's GnuPG home.
pub fn rpmsign(keys: &Keys, rpms: &[PathBuf]) {
    rpmsign_in(&keys.home, &keys.fpr, rpms);
}

fn rpmsign_in(home: &Path, fpr: &str, rpms: &[PathBuf]) {
    ok(Command::new("rpmsign")
        .env("GNUPGHOME", home)
        .args(["--define", "__gpg /usr/bin/gpg"])
        .arg("--define")
        .arg(format!("_gpg_name {fpr}"))
        .arg("--define")
        .arg(format!("_gpg_path {}", home.display()))
        .arg("--addsign")
        .args(rpms)
        .stdin(Stdio::null()));
}

/// Sign `rpm` with rpmsign through a GnuPG home under `work` that imported
/// the armored secret key `secret` (a key khotfix generated, for instance).
pub fn rpmsign_with(secret: &Path, rpm: &Path, work: &Path) {
    let home = work.join("gnupg");
    private_home(&home);
    ok(gpg(&home).args(["--batch", "--import"]).arg(secret));
    let fpr = fingerprint(&home, "--list-secret-keys");
    rpmsign_in(&home, &fpr, &[rpm.to_path_buf()]);
}
