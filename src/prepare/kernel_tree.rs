//! A Debian kernel tree kpatch-build can build in, kept per kernel.
//!
//! kpatch-build does not know Debian's source packages, so khotfix lays the
//! tree out itself (`kpatch-build -s TREE -c CONFIG -v VMLINUX`):
//!
//! - the source is Debian's `linux-source-<mm>` of the *same upload* as the
//!   ABI's headers (Debian's patches applied, as the kernel was built);
//! - the release must be the ABI's (`6.1.0-57-amd64`) or the patch module's
//!   vermagic will not match: Debian builds with `SUBLEVEL = 192` but passes
//!   the ABI as the release, so the tree's `kernel.release` rule is made to
//!   print the ABI, and `LINUX_VERSION_CODE` stays the real 6.1.192;
//! - `.config` is the ABI's own (from linux-headers-<abi>);
//! - a module-only build has no vmlinux to take symbol versions from, so
//!   modpost gets the kernel's `Module.symvers` (from linux-headers-<abi>),
//!   also as `vmlinux.symvers`, which modpost reads back when it rewrites
//!   Module.symvers.
//!
//! Laying out and building the original objects is the slow part of a kpatch
//! job, and it is the same for every patch to the same kernel; so the tree is
//! kept in the cache, keyed by every input above, and reused: a second patch
//! for the same kernel rebuilds only what it changes (kpatch-build reverts
//! its patches when it finishes). Jobs on one tree take its lock in turn. A
//! build that was killed may leave the tree patched: a `building` marker is
//! written before kpatch-build starts and removed after it exits, and a
//! tree found with the marker is thrown away and laid out again.

use crate::kernel::KernelRelease;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Bump when the layout changes: old trees are then not reused.
const LAYOUT_VERSION: &str = "khotfix-kernel-tree-v1";

/// The inputs of a tree.
#[derive(Debug, Clone)]
pub struct TreeInputs<'a> {
    pub kernel: &'a KernelRelease,
    /// The verified linux-source-<mm> .deb and its digest.
    pub source_deb: &'a Path,
    pub source_digest: &'a str,
    /// `usr/src/linux-headers-<abi>` of the unpacked headers.
    pub headers_dir: &'a Path,
}

/// A laid-out tree.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KernelTree {
    /// `<cache>/kernel-trees/<kernel>-<key>`.
    pub dir: PathBuf,
    /// The tree kpatch-build builds in (`dir/src`).
    pub source: PathBuf,
    /// The ABI's config (`dir/config`).
    pub config: PathBuf,
    pub key: String,
}

impl KernelTree {
    fn at(dir: PathBuf, key: String) -> KernelTree {
        KernelTree {
            source: dir.join("src"),
            config: dir.join("config"),
            dir,
            key,
        }
    }

    /// The marker a build writes while it changes the tree.
    pub fn building_marker(&self) -> PathBuf {
        self.dir.join("building")
    }

    /// Take the tree's lock (blocks while another job uses the tree).
    pub fn lock(&self) -> Result<TreeLock> {
        lock(&self.dir)
    }
}

/// The managed tree whose source directory is `source`, if it is one
/// ([`ensure`] made it: its directory holds `ready`).
pub fn managed(source: &Path) -> Option<KernelTree> {
    let dir = source.parent()?;
    let key = std::fs::read_to_string(dir.join("ready")).ok()?;
    (source.file_name()? == "src")
        .then(|| KernelTree::at(dir.to_path_buf(), key.trim().to_string()))
}

/// Held while a job lays out or builds in a tree.
pub struct TreeLock(#[allow(dead_code)] std::fs::File);

fn lock(dir: &Path) -> Result<TreeLock> {
    crate::util::fsx::lock_exclusive(&dir.with_extension("lock")).map(TreeLock)
}

fn file_sha256(p: &Path) -> Result<String> {
    crate::util::fsx::sha256_file(p)
}

/// The cache key of a tree: every input that changes its content.
pub fn tree_key(inp: &TreeInputs) -> Result<String> {
    let mut h = Sha256::new();
    for part in [
        LAYOUT_VERSION.to_string(),
        inp.kernel.to_string(),
        inp.source_digest.to_string(),
        file_sha256(&inp.headers_dir.join(".config"))?,
        file_sha256(&inp.headers_dir.join("Module.symvers"))?,
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

/// The tree for these inputs under `root`, laid out now if it is missing or
/// was left dirty by a killed build. `note` reports the slow steps.
pub fn ensure(root: &Path, inp: &TreeInputs, note: &dyn Fn(&str)) -> Result<KernelTree> {
    let key = tree_key(inp)?;
    let dir = root.join(format!("{}-{}", inp.kernel, &key[..16]));
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let tree = KernelTree::at(dir, key);
    let _lock = tree.lock()?;
    let ready = tree.dir.join("ready");
    if ready.is_file() && !tree.building_marker().exists() {
        return Ok(tree);
    }
    if tree.dir.exists() {
        note("discarding a kernel tree a killed build left patched");
        std::fs::remove_dir_all(&tree.dir)
            .with_context(|| format!("removing {}", tree.dir.display()))?;
    }
    let scratch = root.join(format!(".tmp-{}", &tree.key[..16]));
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    std::fs::create_dir_all(&scratch)?;
    note("unpacking linux-source");
    unpack_source(inp.source_deb, &scratch.join("src"))?;
    lay_out(&scratch, inp)?;
    std::fs::rename(&scratch, &tree.dir)
        .with_context(|| format!("moving the tree to {}", tree.dir.display()))?;
    std::fs::write(&ready, format!("{}\n", tree.key))?;
    Ok(tree)
}

/// Release, config and symbol versions (see the module doc).
fn lay_out(dir: &Path, inp: &TreeInputs) -> Result<()> {
    let src = dir.join("src");
    set_release(&src.join("Makefile"), inp.kernel.as_str())?;
    let copy = |from: &str, to: &Path| -> Result<()> {
        let f = inp.headers_dir.join(from);
        std::fs::copy(&f, to)
            .map(|_| ())
            .with_context(|| format!("copying {} to {}", f.display(), to.display()))
    };
    copy(".config", &src.join(".config"))?;
    copy(".config", &dir.join("config"))?;
    copy("Module.symvers", &src.join("Module.symvers"))?;
    copy("Module.symvers", &src.join("vmlinux.symvers"))?;
    Ok(())
}

const RELEASE_RULE: &str = "filechk_kernel.release = \\\n\techo \"$(KERNELVERSION)$$($(CONFIG_SHELL) $(srctree)/scripts/setlocalversion $(srctree))\"";

/// Make `make kernelrelease` print `release`.
fn set_release(makefile: &Path, release: &str) -> Result<()> {
    if !release
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
    {
        bail!("kernel release {release:?} has characters a Makefile cannot hold");
    }
    let text = std::fs::read_to_string(makefile)
        .with_context(|| format!("reading {}", makefile.display()))?;
    if text.matches(RELEASE_RULE).count() != 1 {
        bail!(
            "{}: no (or more than one) filechk_kernel.release rule to set the release {release} in",
            makefile.display()
        );
    }
    let new = text.replace(
        RELEASE_RULE,
        &format!("# khotfix: the ABI release Debian built this kernel as\nfilechk_kernel.release = echo \"{release}\""),
    );
    crate::util::fsx::write_atomic(makefile, new.as_bytes())
}

/// `usr/src/linux-source-<mm>.tar.xz` out of the .deb, unpacked into `dest`
/// with its top directory stripped; streamed, never written whole.
fn unpack_source(deb: &Path, dest: &Path) -> Result<()> {
    crate::fetch::apt::with_deb_filesystem(deb, |tar| {
        unpack_source_tarball(tar, dest)
            .with_context(|| format!("unpacking the kernel source from {}", deb.display()))
    })
}

fn unpack_source_tarball(deb_tar: impl Read, dest: &Path) -> Result<()> {
    let mut outer = tar::Archive::new(deb_tar);
    for e in outer.entries()? {
        let e = e?;
        let path = e.path()?.to_string_lossy().to_string();
        let name = path.trim_start_matches("./");
        let is_source = name.starts_with("usr/src/linux-source-") && name.ends_with(".tar.xz");
        if !is_source {
            continue;
        }
        let xz = liblzma::read::XzDecoder::new_multi_decoder(e);
        return unpack_stripped(xz, dest);
    }
    bail!("no usr/src/linux-source-*.tar.xz in the package")
}

/// Unpack a tar, dropping its first path component. Every path must stay
/// inside `dest`, and so must every symlink's target (resolved lexically
/// from the link's directory), so no later entry can be written through a
/// link to outside the tree.
fn unpack_stripped(r: impl Read, dest: &Path) -> Result<()> {
    use std::path::Component;
    std::fs::create_dir_all(dest)?;
    let mut ar = tar::Archive::new(r);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    for e in ar.entries()? {
        let mut e = e?;
        let path = e.path()?.into_owned();
        let rest: PathBuf = path.components().skip(1).collect();
        if rest.as_os_str().is_empty() {
            continue;
        }
        if !rest.components().all(|c| matches!(c, Component::Normal(_))) {
            bail!("{}: entry escapes the tree", path.display());
        }
        if let Some(link) = e.link_name()? {
            let base = rest.parent().unwrap_or(Path::new(""));
            if !stays_inside(base, &link) {
                bail!(
                    "{}: link to {} leaves the tree",
                    path.display(),
                    link.display()
                );
            }
        }
        let target = dest.join(&rest);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        e.set_unpack_xattrs(false);
        e.unpack(&target)
            .with_context(|| format!("unpacking {}", path.display()))?;
    }
    Ok(())
}

/// Whether `link`, followed from tree-relative directory `base`, stays in the tree.
fn stays_inside(base: &Path, link: &Path) -> bool {
    use std::path::Component;
    let mut depth = base.components().count() as i64;
    for c in link.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_must_stay_inside_the_tree() {
        assert!(stays_inside(
            Path::new("arch/x86/boot"),
            Path::new("../../../include")
        ));
        assert!(!stays_inside(
            Path::new("arch/x86"),
            Path::new("../../../etc")
        ));
        assert!(!stays_inside(Path::new("a"), Path::new("/etc/passwd")));
    }

    #[test]
    fn the_release_rule_is_replaced_once_or_refused() {
        let d = tempfile::tempdir().unwrap();
        let mk = d.path().join("Makefile");
        std::fs::write(&mk, format!("SUBLEVEL = 192\n{RELEASE_RULE}\n")).unwrap();
        set_release(&mk, "6.1.0-57-amd64").unwrap();
        let t = std::fs::read_to_string(&mk).unwrap();
        assert!(
            t.contains("filechk_kernel.release = echo \"6.1.0-57-amd64\""),
            "{t}"
        );
        assert!(t.contains("SUBLEVEL = 192"));
        let e = set_release(&mk, "6.1.0-57-amd64").unwrap_err().to_string();
        assert!(e.contains("no (or more than one)"), "{e}");
        std::fs::write(&mk, RELEASE_RULE).unwrap();
        assert!(set_release(&mk, "6.1.0\"; rm -rf /").is_err());
    }
}
