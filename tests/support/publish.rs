//! `khotfix publish` and `khotfix repo verify` as the repository tests call
//! them: through the real binary, the package-signing key from a
//! [`Keys`](super::gpg::Keys) fixture.

use super::bin::khotfix;
use super::gpg::Keys;
use super::process::{output, text};
use std::path::{Path, PathBuf};
use std::process::Output;

/// `khotfix publish --repo REPO --gpg-key KEYS EXTRA... RPMS...`.
pub fn publish(keys: &Keys, repo: &Path, extra: &[&str], rpms: &[PathBuf]) -> Output {
    output(
        khotfix()
            .arg("publish")
            .arg("--repo")
            .arg(repo)
            .arg("--gpg-key")
            .arg(&keys.secret)
            .args(extra)
            .args(rpms),
    )
}

/// `publish --json` that must succeed; its report.
pub fn publish_ok(keys: &Keys, repo: &Path, extra: &[&str], rpms: &[PathBuf]) -> serde_json::Value {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let out = publish(keys, repo, &args, rpms);
    assert!(
        out.status.success(),
        "publish failed: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `khotfix repo verify REPO`.
pub fn verify(repo: &Path) -> Output {
    output(khotfix().args(["repo", "verify"]).arg(repo))
}
