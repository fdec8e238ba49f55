//! dnf as the tests run it: a client that reads no system configuration,
//! keeps its cache private and never hides a failure. Debian's dnf.conf sets
//! `skip_if_unavailable=True`, which would turn every metadata failure into
//! a silent success, so it is always False here.

use std::path::Path;
use std::process::Command;

/// `dnf -y` with plugins off, release 1, skip_if_unavailable=False and the
/// cache in `cache`. Repositories and the command are the caller's.
pub fn dnf(cache: &Path) -> Command {
    let mut c = Command::new("dnf");
    c.args([
        "-y",
        "--releasever=1",
        "--disableplugin=*",
        "--setopt=skip_if_unavailable=False",
    ])
    .arg(format!("--setopt=cachedir={}", cache.display()));
    c
}

/// `dnf(cache)` that sees no repository but the ones the caller adds.
pub fn dnf_no_repos(cache: &Path) -> Command {
    let mut c = dnf(cache);
    c.arg("--setopt=reposdir=/dev/null");
    c
}

/// `dnf(cache)` on the `.repo` files in `reposdir`, installing into `root`.
pub fn dnf_root(reposdir: &Path, cache: &Path, root: &Path) -> Command {
    let mut c = dnf(cache);
    c.arg(format!("--setopt=reposdir={}", reposdir.display()))
        .arg(format!("--installroot={}", root.display()));
    c
}

/// Add repository `id` at `url` as a khotfix repository is meant to be
/// used: gpgcheck and repo_gpgcheck on, the key from `key_url`, metadata
/// always fetched again.
pub fn signed_repo<'c>(c: &'c mut Command, id: &str, url: &str, key_url: &str) -> &'c mut Command {
    c.arg(format!("--repofrompath={id},{url}"))
        .arg(format!("--setopt={id}.gpgcheck=1"))
        .arg(format!("--setopt={id}.repo_gpgcheck=1"))
        .arg(format!("--setopt={id}.gpgkey={key_url}"))
        .arg(format!("--setopt={id}.metadata_expire=0"))
}

/// The key file `khotfix publish` writes at the top of a repository served
/// at `root_url`.
pub fn key_url(root_url: &str) -> String {
    format!("{root_url}RPM-GPG-KEY-khotfix")
}
