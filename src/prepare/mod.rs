//! Stage: prepare. From fetched kernel packages and a recipe's patches to a
//! source tree ready for kpatch-build or kbuild:
//!
//! - [`srpm`]: unpack source and binary RPMs safely (no path leaves the work
//!   directory), pull `vmlinux` out of kernel-debuginfo, find the kernel
//!   config, and describe the `rpmbuild -bp` run the builder container does.
//! - [`apply`]: apply a target's patches, all of them dry-run first, so a
//!   patch that does not apply fails in seconds, before any compile.
//! - [`preflight`]: read the patches for what kpatch cannot handle.

pub mod apply;
pub mod kbuild_targets;
pub mod kernel_tree;
pub mod payload;
pub mod preflight;
pub mod srpm;

use crate::kernel::KernelRelease;
use crate::util::proc::process;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What must run inside the builder container to prepare a RHEL-family tree,
/// from [`stage_rpm_source`]. The container runtime runs `rpmbuild.argv()`
/// with the work directory mounted at the container path it was built for.
#[derive(Debug, Clone, Serialize)]
pub struct RpmPrepareSpec {
    /// The rpmbuild top directory on the host (`<work>/topdir`).
    pub topdir_host: PathBuf,
    /// The `rpmbuild -bp` invocation, with container paths.
    pub rpmbuild: srpm::RpmbuildPrep,
}

/// A kernel tree ready for kpatch-build `-s TREE -c CONFIG -v VMLINUX` (or kbuild).
#[derive(Debug, Clone, Serialize)]
pub struct PreparedTree {
    /// The source tree on the host.
    pub tree: PathBuf,
    /// The kernel config (also copied to `tree/.config`).
    pub config: PathBuf,
    /// The recipe's patches, checked (not applied: kpatch-build applies
    /// them itself, and reverts them, on the tree it is given).
    pub patch_check: apply::ApplyReport,
}

/// Host side, before the container: unpack `srpm` safely into
/// `<work_host>/topdir` (spec in SPECS/, sources in SOURCES/) and build the
/// `rpmbuild -bp` command for the same directory as the container sees it
/// (`<work_container>/topdir`).
pub fn stage_rpm_source(
    srpm: &Path,
    work_host: &Path,
    work_container: &Path,
    arch: &str,
) -> Result<RpmPrepareSpec> {
    let topdir_host = work_host.join("topdir");
    let t = srpm::layout_topdir(srpm, &topdir_host)?;
    let rpmbuild = srpm::RpmbuildPrep::new(&work_container.join("topdir"), &t.spec, arch)
        .map_err(|e| anyhow::anyhow!("{}: {e}", srpm.display()))?;
    Ok(RpmPrepareSpec {
        topdir_host,
        rpmbuild,
    })
}

/// Host side, after the container ran `rpmbuild -bp`: find the tree and the
/// kernel config (distro table), set `EXTRAVERSION` to the target kernel's
/// release, install `.config`, and check that every patch applies, in order.
/// A patch that does not apply fails here, in seconds, before any compile.
pub fn finish_rpm_tree(
    spec: &RpmPrepareSpec,
    distro: &crate::distro::Distro,
    kernel: &KernelRelease,
    patches: &[PathBuf],
) -> Result<PreparedTree> {
    let tree = srpm::RpmbuildPrep::find_tree(&spec.topdir_host)?;
    let config = srpm::find_config(
        distro,
        kernel,
        &spec.rpmbuild.arch,
        &spec.topdir_host.join("SOURCES"),
        Some(&tree),
    )?;
    srpm::set_extraversion(&tree, kernel)?;
    let dot_config = tree.join(".config");
    if config != dot_config {
        let bytes =
            std::fs::read(&config).with_context(|| format!("reading {}", config.display()))?;
        crate::util::fsx::write_atomic(&dot_config, &bytes)?;
    }
    let patch_check = apply::check(&tree, patches)?;
    Ok(PreparedTree {
        tree,
        config,
        patch_check,
    })
}

/// Check the recipe's patches against the kernel tree a RHEL-family source
/// RPM carries, on the host, before any build: `khotfix run` hands kpatch
/// targets on `-r SRPM` distros straight to kpatch-build, which would only
/// find a patch that does not apply minutes into its own `rpmbuild -bp`.
///
/// The SRPM is laid out in `<work>/topdir` (replaced if there) and only the
/// files the patches touch are extracted from its `linux-*.tar.*` (the
/// vendor's tarball already carries the vendor's changes) into
/// `<work>/patch-check`, then [`apply::check`] runs there. A file the
/// tarball lacks is reported by the check as a missing file.
pub fn check_patches_against_srpm(
    srpm: &Path,
    work: &Path,
    patches: &[PathBuf],
) -> Result<apply::ApplyReport> {
    let topdir = work.join("topdir");
    let tree = work.join("patch-check");
    for d in [&topdir, &tree] {
        if d.exists() {
            std::fs::remove_dir_all(d).with_context(|| format!("removing {}", d.display()))?;
        }
    }
    let t = srpm::layout_topdir(srpm, &topdir)?;
    let tarballs: Vec<&String> = t
        .sources
        .iter()
        .filter(|s| s.starts_with("linux-") && s.contains(".tar") && !s.contains('/'))
        .collect();
    let tarball = match tarballs.as_slice() {
        [one] => topdir.join("SOURCES").join(one),
        [] => anyhow::bail!("{}: no linux-*.tar.* kernel tarball", srpm.display()),
        many => anyhow::bail!(
            "{}: more than one kernel tarball: {}",
            srpm.display(),
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut members = std::collections::BTreeSet::new();
    for p in patches {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let parsed = crate::patchfile::Patch::parse(&text)
            .map_err(|e| anyhow::anyhow!("{}:{}: {}", p.display(), e.line, e.message))?;
        for f in parsed.files {
            // Also keeps tar's wildcard characters out of the member patterns.
            crate::util::validate::host_path("patched file", &format!("/{}", f.path))
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            members.insert(f.path);
        }
    }
    std::fs::create_dir_all(&tree).with_context(|| format!("creating {}", tree.display()))?;
    extract_members(&tarball, &tree, &members)?;
    Ok(apply::check(&tree, patches)?)
}

/// Extract `members` (paths below the tarball's one top directory) from a
/// kernel tarball into `dest` with GNU tar. Members the tarball lacks are
/// not an error here: the patch check names them with the patch line.
fn extract_members(
    tarball: &Path,
    dest: &Path,
    members: &std::collections::BTreeSet<String>,
) -> Result<()> {
    if members.is_empty() {
        return Ok(());
    }
    let mut tar = process("tar");
    tar.env("LC_ALL", "C")
        .arg("-x")
        .arg("-f")
        .arg(tarball)
        .arg("-C")
        .arg(dest)
        .args([
            "--strip-components=1",
            "--no-same-owner",
            "--wildcards",
            "--no-wildcards-match-slash",
        ])
        .args(members.iter().map(|m| format!("*/{m}")));
    let out = tar.output_unchecked()?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let real: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            !l.contains("Not found in archive")
                && !l.contains("Exiting with failure status due to previous errors")
        })
        .collect();
    if real.is_empty() {
        return Ok(());
    }
    anyhow::bail!("{}: tar: {}", tarball.display(), real.join("; "))
}
