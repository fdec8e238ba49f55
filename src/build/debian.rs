//! Debian kernel headers for one ABI, downloaded with the host's apt and
//! unpacked with `dpkg-deb -x`: linux-headers-<abi>-<flavour>, its -common
//! package and the linux-kbuild it depends on. This is the build stage's
//! interim input provider until the fetch stage supplies header trees; the
//! result is a [`KernelInputs::Headers`](super::KernelInputs) root.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The ABI `linux-image-amd64` currently depends on (`6.1.0-56-amd64`).
pub fn current_kernel(metapackage: &str) -> Result<String> {
    let out = duct::cmd!("apt-cache", "depends", metapackage)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .context("running apt-cache")?;
    if !out.status.success() {
        bail!(
            "apt-cache depends {metapackage}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    for l in text.lines() {
        if let Some(dep) = l.trim().strip_prefix("Depends: linux-image-") {
            let k = dep.trim().trim_end_matches("-unsigned");
            crate::kernel::KernelRelease::parse(k)
                .map_err(|e| anyhow::anyhow!("apt-cache depends {metapackage}: {e}"))?;
            return Ok(k.to_string());
        }
    }
    bail!("apt-cache depends {metapackage}: no linux-image-* dependency")
}

/// The packages holding the headers of `kernel` (`6.1.0-56-amd64`).
pub fn header_packages(kernel: &str) -> Result<Vec<String>> {
    let k = crate::kernel::KernelRelease::parse(kernel).map_err(|e| anyhow::anyhow!(e))?;
    let base = format!("{}-{}", k.version, k.release);
    let kbuild = format!(
        "linux-kbuild-{}",
        k.version.split('.').take(2).collect::<Vec<_>>().join(".")
    );
    Ok(vec![
        format!("linux-headers-{kernel}"),
        format!("linux-headers-{base}-common"),
        kbuild,
    ])
}

/// Unpacked headers of one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianHeaders {
    /// Extracted root (`usr/src/...`, `usr/lib/linux-kbuild-*`).
    pub root: PathBuf,
    /// `linux-headers-<kernel>` (under `usr/src`).
    pub kdir: String,
    /// `(.deb file name, sha256)` of the packages: the cache key's kernel input.
    pub digests: Vec<(String, String)>,
}

/// Download and unpack the headers of `kernel` under `dir` (reused when
/// `dir/.complete` names the same kernel).
pub fn headers(kernel: &str, dir: &Path) -> Result<DebianHeaders> {
    let kdir = format!("linux-headers-{kernel}");
    let root = dir.join("root");
    let debs = dir.join("debs");
    let marker = dir.join(".complete");
    let done = |root: PathBuf, kdir: String| -> Result<DebianHeaders> {
        let mut digests = Vec::new();
        for e in std::fs::read_dir(&debs)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "deb") {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                digests.push((name, crate::util::fsx::sha256_file(&p)?));
            }
        }
        digests.sort();
        Ok(DebianHeaders {
            root,
            kdir,
            digests,
        })
    };
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(kernel)
        && root.join("usr/src").join(&kdir).is_dir()
    {
        return done(root, kdir);
    }
    for d in [&debs, &root] {
        if d.exists() {
            std::fs::remove_dir_all(d)?;
        }
        std::fs::create_dir_all(d)?;
    }
    let pkgs = header_packages(kernel)?;
    let out = duct::cmd(
        "apt-get",
        std::iter::once("download".to_string()).chain(pkgs.iter().cloned()),
    )
    .dir(&debs)
    .stdout_capture()
    .stderr_capture()
    .unchecked()
    .run()
    .context("running apt-get download")?;
    if !out.status.success() {
        bail!(
            "apt-get download {}: {}",
            pkgs.join(" "),
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace('\n', " ")
        );
    }
    for e in std::fs::read_dir(&debs)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "deb") {
            let o = duct::cmd!("dpkg-deb", "-x", &p, &root)
                .stderr_capture()
                .unchecked()
                .run()?;
            if !o.status.success() {
                bail!(
                    "dpkg-deb -x {}: {}",
                    p.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
            }
        }
    }
    if !root.join("usr/src").join(&kdir).is_dir() {
        bail!("{kdir} missing after unpacking {}", pkgs.join(", "));
    }
    crate::util::fsx::write_atomic(&marker, kernel.as_bytes())?;
    done(root, kdir)
}

#[cfg(test)]
mod tests {
    #[test]
    fn packages_for_abi() {
        assert_eq!(
            super::header_packages("6.1.0-56-amd64").unwrap(),
            [
                "linux-headers-6.1.0-56-amd64",
                "linux-headers-6.1.0-56-common",
                "linux-kbuild-6.1"
            ]
        );
        assert!(super::header_packages("bad").is_err());
    }
}
