//! kpatch backend: kpatch-build inside the distro's builder, with its
//! documented options (kpatch-build/kpatch-build `usage()`):
//!
//! - `-r SRPM` for distros kpatch-build recognises (CentOS 7: `kpatch_mode =
//!   "srpm"`), plus `-v VMLINUX` from kernel-debuginfo so it need not be
//!   installed in the image; kpatch-build derives the kernel release from the
//!   SRPM's file name, which is therefore kept;
//! - `-s SRCDIR -c CONFIG -v VMLINUX` on a tree the prepare stage made, for
//!   distros it does not recognise (Alibaba Cloud Linux 3);
//! - the distro's flags for the kernel (`-R` for 3.10.0 el7, see
//!   `Distro::kpatch_flags_for`), `-n kpatch-<id>` so the module loads as
//!   `kpatch_<id>`, `--skip-compiler-check` only when the recipe asks,
//!   `-o OUTDIR`, `-j N`, then the patch files.
//!
//! kpatch-build keeps one kernel at a time in `$CACHEDIR` (default
//! `~/.kpatch`), so every job gets its own CACHEDIR; ccache (`CCACHE_DIR`)
//! is shared by the jobs of the same kernel. kpatch-build puts ccache on
//! PATH itself for the distros it knows (`-r SRPM`: it unpacks a fresh tree
//! every time, so ccache is what saves the recompile). A prepared tree
//! (`-s`) keeps its objects between jobs (see
//! [`crate::prepare::kernel_tree`]), so there ccache would only add its
//! hashing to every compile: it is left off.

use super::container::{Mount, RunSpec};
use super::{BackendRun, KernelInputs};
use crate::distro::Distro;
use crate::plan::Job;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Container paths.
pub const KERNEL_DIR: &str = "/in/kernel";
pub const SRC_DIR: &str = "/in/src";
pub const PATCH_DIR: &str = "/in/patches";
pub const OUT_DIR: &str = "/out";
pub const CACHE_DIR: &str = "/kpatch-cache";
pub const CCACHE_DIR: &str = "/ccache";
/// Where a host kpatch-build (the test stand-in) is mounted.
pub const OVERRIDE_PATH: &str = "/opt/khotfix/bin/kpatch-build";

/// Path-independent flags: distro flags, `-n`, `--skip-compiler-check`.
pub fn fixed_flags(distro: &Distro, job: &Job, skip_compiler_check: bool) -> Vec<String> {
    let mut f = distro.kpatch_flags_for(&job.kernel);
    f.push("-n".into());
    f.push(crate::recipe::names::module_base(job.hotfix_id));
    if skip_compiler_check {
        f.push("--skip-compiler-check".into());
    }
    f
}

/// The kernel as kpatch-build sees it inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelArgs {
    Srpm {
        srpm: String,
        vmlinux: String,
    },
    PreparedTree {
        source: String,
        config: String,
        vmlinux: String,
        /// `-t` targets (module-only builds); empty: kpatch-build's default.
        targets: Vec<String>,
    },
}

/// kpatch-build's full argument list (without the program).
pub fn arguments(
    kernel: &KernelArgs,
    fixed: &[String],
    out: &str,
    jobs: usize,
    patches: &[String],
) -> Vec<String> {
    let mut a: Vec<String> = match kernel {
        KernelArgs::Srpm { srpm, vmlinux } => {
            vec!["-r".into(), srpm.clone(), "-v".into(), vmlinux.clone()]
        }
        KernelArgs::PreparedTree {
            source,
            config,
            vmlinux,
            targets,
        } => {
            let mut a: Vec<String> = vec![
                "-s".into(),
                source.clone(),
                "-c".into(),
                config.clone(),
                "-v".into(),
                vmlinux.clone(),
            ];
            for t in targets {
                a.extend(["-t".into(), t.clone()]);
            }
            a
        }
    };
    a.extend(fixed.iter().cloned());
    a.extend([
        "-o".into(),
        out.into(),
        "-j".into(),
        jobs.max(1).to_string(),
    ]);
    a.extend(patches.iter().cloned());
    a
}

fn file_name(p: &Path) -> Result<String> {
    let n = p
        .file_name()
        .and_then(|s| s.to_str())
        .with_context(|| format!("{} has no UTF-8 file name", p.display()))?;
    crate::util::validate::package_token("file name", n)
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    Ok(n.to_string())
}

/// Run kpatch-build for the job; returns the built `.ko`.
#[allow(clippy::too_many_arguments)]
pub fn run(r: &BackendRun) -> Result<PathBuf> {
    let BackendRun {
        engine,
        inputs: inp,
        distro,
        image,
        work,
        log,
        settings: s,
        progress,
    } = *r;
    let job = &inp.job;
    let out = work.join("out");
    let cachedir = work.join("kpatch-cache");
    let ccache = s.work_dir.join("ccache").join(job.kernel.as_str());
    for d in [&out, &cachedir] {
        if d.exists() {
            std::fs::remove_dir_all(d).with_context(|| format!("cleaning {}", d.display()))?;
        }
    }
    for d in [&out, &cachedir, &ccache] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut mounts = Vec::new();
    let mut output_dirs = vec![out.clone(), cachedir.clone(), ccache.clone()];
    let kernel = match (&inp.kernel, distro.kpatch_mode) {
        (KernelInputs::Srpm { srpm, vmlinux }, crate::distro::KpatchMode::Srpm) => {
            let name = file_name(srpm)?;
            if !name.ends_with(".src.rpm") {
                bail!("job {}: source RPM {} must be named *.src.rpm (kpatch-build reads the kernel release from it)", job.id, srpm.display());
            }
            let (c_srpm, c_vmlinux) = (
                format!("{KERNEL_DIR}/{name}"),
                format!("{KERNEL_DIR}/vmlinux"),
            );
            mounts.push(Mount::ro(srpm, &c_srpm));
            mounts.push(Mount::ro(vmlinux, &c_vmlinux));
            KernelArgs::Srpm {
                srpm: c_srpm,
                vmlinux: c_vmlinux,
            }
        }
        (
            KernelInputs::PreparedTree {
                source,
                config,
                vmlinux,
                targets,
            },
            crate::distro::KpatchMode::PreparedTree,
        ) => {
            let (c_config, c_vmlinux) = (
                format!("{KERNEL_DIR}/config"),
                format!("{KERNEL_DIR}/vmlinux"),
            );
            // kpatch-build builds in the tree (original and patched objects).
            mounts.push(Mount::rw(source, SRC_DIR));
            mounts.push(Mount::ro(config, &c_config));
            mounts.push(Mount::ro(vmlinux, &c_vmlinux));
            output_dirs.push(source.clone());
            KernelArgs::PreparedTree {
                source: SRC_DIR.into(),
                config: c_config,
                vmlinux: c_vmlinux,
                targets: targets.clone(),
            }
        }
        (_, mode) => bail!(
            "job {}: distro {} uses kpatch mode {mode:?}, which these kernel inputs do not fit",
            job.id,
            distro.name
        ),
    };
    let mut patches = Vec::new();
    for (i, p) in inp.patches.iter().enumerate() {
        let c = format!("{PATCH_DIR}/{:02}-{}", i + 1, file_name(p)?);
        mounts.push(Mount::ro(p, &c));
        patches.push(c);
    }
    mounts.push(Mount::rw(&out, OUT_DIR));
    mounts.push(Mount::rw(&cachedir, CACHE_DIR));
    mounts.push(Mount::rw(&ccache, CCACHE_DIR));
    let program = match &s.kpatch_build {
        Some(host) => {
            mounts.push(Mount::ro(host, OVERRIDE_PATH));
            OVERRIDE_PATH.to_string()
        }
        None => "kpatch-build".to_string(),
    };
    let fixed = fixed_flags(distro, job, inp.skip_compiler_check);
    let mut command = vec![program];
    command.extend(arguments(&kernel, &fixed, OUT_DIR, s.make_jobs, &patches));
    let spec = RunSpec {
        image: image.to_string(),
        name_prefix: job.id.clone(),
        mounts,
        env: vec![
            ("CACHEDIR".into(), CACHE_DIR.into()),
            ("CCACHE_DIR".into(), CCACHE_DIR.into()),
        ],
        workdir: Some(OUT_DIR.into()),
        command,
        timeout: s.timeout,
        output_dirs,
        log: log.to_path_buf(),
    };
    // A khotfix-managed tree is shared by the jobs of one kernel: build in
    // it alone, and mark it while kpatch-build has it patched.
    let managed = match &inp.kernel {
        KernelInputs::PreparedTree { source, .. } => crate::prepare::kernel_tree::managed(source),
        _ => None,
    };
    let _lock = managed.as_ref().map(|t| t.lock()).transpose()?;
    if let Some(t) = &managed {
        std::fs::write(t.building_marker(), &job.id)
            .with_context(|| format!("marking {}", t.dir.display()))?;
    }
    let r = engine.run(&spec, progress)?;
    if let Some(t) = &managed {
        // kpatch-build reverted its patches on exit (success or failure).
        std::fs::remove_file(t.building_marker())
            .with_context(|| format!("unmarking {}", t.dir.display()))?;
    }
    if r.exit_code != 0 {
        // kpatch-build's own log is in CACHEDIR/build.log; point at both.
        bail!(
            "job {}: kpatch-build failed (exit {}); see {} and {}",
            job.id,
            r.exit_code,
            log.display(),
            cachedir.join("build.log").display()
        );
    }
    let ko = out.join(crate::recipe::names::module_file(job.hotfix_id));
    if !ko.is_file() {
        bail!(
            "job {}: kpatch-build succeeded but {} was not produced; see {}",
            job.id,
            ko.display(),
            log.display()
        );
    }
    Ok(ko)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::KernelRelease;

    fn job(k: &str, distro: &str) -> Job {
        Job {
            id: "1-t-x".into(),
            recipe: "r.toml".into(),
            hotfix_id: 1062,
            hotfix_name: "n".into(),
            target: "t".into(),
            distro: distro.into(),
            backend: crate::recipe::Backend::Kpatch,
            kernel: KernelRelease::parse(k).unwrap(),
            package: "p".into(),
        }
    }

    #[test]
    fn el7_srpm_arguments() {
        let d = Distro::builtin("centos7").unwrap();
        let j = job("3.10.0-1062.9.1.el7.x86_64", "centos7");
        let k = KernelArgs::Srpm {
            srpm: "/in/kernel/kernel-3.10.0-1062.9.1.el7.src.rpm".into(),
            vmlinux: "/in/kernel/vmlinux".into(),
        };
        let a = arguments(
            &k,
            &fixed_flags(&d, &j, false),
            "/out",
            2,
            &["/in/patches/01-a.patch".into()],
        );
        assert_eq!(
            a,
            [
                "-r",
                "/in/kernel/kernel-3.10.0-1062.9.1.el7.src.rpm",
                "-v",
                "/in/kernel/vmlinux",
                "-R",
                "-n",
                "kpatch-1062",
                "-o",
                "/out",
                "-j",
                "2",
                "/in/patches/01-a.patch"
            ]
        );
    }

    #[test]
    fn alinux_prepared_tree_arguments() {
        let d = Distro::builtin("alinux3").unwrap();
        let j = job("5.10.134-18.al8.x86_64", "alinux3");
        let k = KernelArgs::PreparedTree {
            source: "/in/src".into(),
            config: "/in/kernel/config".into(),
            vmlinux: "/in/kernel/vmlinux".into(),
            targets: vec![],
        };
        let a = arguments(&k, &fixed_flags(&d, &j, true), "/out", 0, &[]);
        assert_eq!(
            a,
            [
                "-s",
                "/in/src",
                "-c",
                "/in/kernel/config",
                "-v",
                "/in/kernel/vmlinux",
                "-n",
                "kpatch-1062",
                "--skip-compiler-check",
                "-o",
                "/out",
                "-j",
                "1"
            ]
        );
        assert!(!a.contains(&"-R".to_string()));
    }
}
