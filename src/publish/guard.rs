//! Integrity checks publish makes before it writes anything (issue 16).
//!
//! * The repository layout: nothing publish writes to or reads from
//!   (`Packages/`, `.khotfix.lock`, `.khotfix-cache/`, the key and client
//!   files, generation directories) may be a symlink, so a planted link
//!   cannot make publish create or overwrite files outside the repository.
//!   `repodata` is the one symlink we own; it must point at a generation
//!   directory of this repository.
//! * Package file names: what the file system takes (255 bytes, NAME_MAX),
//!   from a safe alphabet. rpm, createrepo_c and dnf set no limit of their
//!   own; long kernel releases make long names, so 128 was too short.
//! * Package signatures: every input must carry a valid signature by the
//!   repository key (`rpm -K` against a database holding only that key, the
//!   check `repo verify` and every gpgcheck=1 client make). Truncated,
//!   unsigned and foreign-signed packages are refused before anything is
//!   written; `--sign` signs unsigned ones with the repository key instead.

use crate::package::keydb::{KeyDb, SigVerdict};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

/// Longest package file name: the file system's NAME_MAX.
pub const MAX_FILE_NAME: usize = 255;

/// Repository entries publish writes or reads and that must not be symlinks.
const NO_SYMLINKS: &[&str] = &[
    "Packages",
    ".khotfix.lock",
    ".khotfix-cache",
    super::KEY_FILE,
    super::REPO_FILE,
];

/// Refuse a repository in which publish would follow a symlink. Checks the
/// fixed entries, every generation directory and what `repodata` points at.
pub fn check_layout(repo: &Path) -> Result<()> {
    let refuse = |name: &str, what: &str| {
        anyhow!(
            "{}: {what}; publish never writes through symlinks in the repository: refused",
            repo.join(name).display()
        )
    };
    for name in NO_SYMLINKS {
        if let Ok(md) = std::fs::symlink_metadata(repo.join(name)) {
            if md.file_type().is_symlink() {
                return Err(refuse(name, "is a symlink"));
            }
        }
    }
    let rd = match std::fs::read_dir(repo) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", repo.display())),
    };
    for de in rd {
        let de = de.with_context(|| format!("listing {}", repo.display()))?;
        let name = de.file_name().to_string_lossy().into_owned();
        if name.starts_with(".repodata-") || name.starts_with(".repodata.tmp-") {
            let md = std::fs::symlink_metadata(de.path())
                .with_context(|| format!("stat {}", de.path().display()))?;
            if md.file_type().is_symlink() {
                return Err(refuse(&name, "(a metadata generation) is a symlink"));
            }
        }
    }
    let link = repo.join("repodata");
    if let Ok(md) = std::fs::symlink_metadata(&link) {
        if md.file_type().is_symlink() {
            let target = std::fs::read_link(&link)
                .with_context(|| format!("reading the symlink {}", link.display()))?;
            let t = target.to_string_lossy();
            if !t.starts_with(".repodata-") || t.contains('/') {
                return Err(refuse(
                    "repodata",
                    &format!("points at {t:?}, not at a generation directory of the repository"),
                ));
            }
        }
    }
    Ok(())
}

/// Check a package file name (inside `Packages/`).
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty file name".into());
    }
    if name.len() > MAX_FILE_NAME {
        return Err(format!(
            "file name is {} bytes, longer than the file system's {MAX_FILE_NAME}",
            name.len()
        ));
    }
    if name.starts_with(['-', '.']) {
        return Err("file name starts with '-' or '.'".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-')))
    {
        return Err(format!(
            "file name contains {c:?}; only ASCII letters, digits, '.', '_', '+' and '-' are allowed"
        ));
    }
    if !name.ends_with(".rpm") {
        return Err("file name does not end in .rpm".into());
    }
    Ok(())
}

/// Refuse any of `rpms` that is not signed by the repository key, with one
/// line naming the first bad file. With `sign`, unsigned packages are signed
/// with `signer` into `scratch` instead; returns the path to publish for each
/// input (the input itself, or its signed copy).
pub fn gate_signatures(
    rpms: &[PathBuf],
    public_key: &str,
    signer: Option<&crate::keys::PackageSigner>,
    scratch: &Path,
) -> Result<Vec<PathBuf>> {
    if rpms.is_empty() {
        return Ok(Vec::new());
    }
    let db = KeyDb::from_armored(public_key)?;
    let abs: Vec<String> = rpms
        .iter()
        .map(|p| {
            std::path::absolute(p)
                .map(|a| a.to_string_lossy().into_owned())
                .with_context(|| format!("{}: cannot resolve the path", p.display()))
        })
        .collect::<Result<_>>()?;
    let verdicts = db.check(Path::new("/"), &abs)?;
    let mut out = Vec::with_capacity(rpms.len());
    for (i, (path, verdict)) in rpms.iter().zip(verdicts).enumerate() {
        match verdict {
            SigVerdict::Good => out.push(path.clone()),
            SigVerdict::Unsigned => match signer {
                Some(s) => {
                    let signed = scratch.join(format!("{i}.rpm"));
                    sign_copy(path, &signed, s)?;
                    let again = db.check(Path::new("/"), &[signed.to_string_lossy().into_owned()])?;
                    if again != [SigVerdict::Good] {
                        bail!(
                            "{}: signed with the repository key, but rpm -K still says {again:?}",
                            path.display()
                        );
                    }
                    out.push(signed);
                }
                None => bail!(
                    "{}: unsigned package (clients with gpgcheck=1 refuse it); sign it, or pass --sign to sign it with the repository key",
                    path.display()
                ),
            },
            SigVerdict::Bad(why) => bail!(
                "{}: package signature check against the repository key failed: {why} (truncated, damaged or signed by another key)",
                path.display()
            ),
        }
    }
    Ok(out)
}

/// Sign the unsigned package `src` with `signer`, writing `dest`.
fn sign_copy(src: &Path, dest: &Path, signer: &crate::keys::PackageSigner) -> Result<()> {
    let mut pkg = rpm::Package::open(src)
        .map_err(|e| anyhow!("{}: not a readable RPM: {e}", src.display()))?;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    crate::package::sigheader::sign_package(&mut pkg, signer, t)
        .with_context(|| format!("{}: signing", src.display()))?;
    let mut bytes = Vec::new();
    pkg.write(&mut bytes)
        .map_err(|e| anyhow!("{}: serializing the signed package: {e}", src.display()))?;
    std::fs::write(dest, &bytes).with_context(|| format!("writing {}", dest.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert!(check_file_name("kernel-hotfix-1-1.0-1.x86_64.rpm").is_ok());
        let long = format!("{}.rpm", "a".repeat(251));
        assert_eq!(long.len(), 255);
        assert!(check_file_name(&long).is_ok());
        let longer = format!("{}.rpm", "a".repeat(252));
        assert!(check_file_name(&longer).unwrap_err().contains("256 bytes"));
        assert!(check_file_name(".hidden.rpm").is_err());
        assert!(check_file_name("a b.rpm").is_err());
        assert!(check_file_name("a:b.rpm").is_err());
        assert!(check_file_name("a.txt").is_err());
    }

    #[test]
    fn layout_refuses_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let repo = d.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        assert!(check_layout(&repo).is_ok());
        for name in NO_SYMLINKS {
            let l = repo.join(name);
            std::os::unix::fs::symlink(d.path(), &l).unwrap();
            let e = check_layout(&repo).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains("symlink"), "{e}");
            std::fs::remove_file(&l).unwrap();
        }
        std::os::unix::fs::symlink("/etc", repo.join("repodata")).unwrap();
        assert!(check_layout(&repo)
            .unwrap_err()
            .to_string()
            .contains("/etc"));
    }
}
