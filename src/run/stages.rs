//! One library function per stage: typed input in, typed output out.
//!
//! `khotfix run` calls these through thin [`super::Stage`] adapters
//! (`wire.rs`); `khotfix build` calls [`fetch`], [`prepare`] and
//! [`build_inputs`] directly, so a Debian header tree or a prepared kpatch
//! tree reaches the builder the same way from either command. Nothing here
//! knows about the orchestrator's state files or the CLI.

use super::artifacts::{FetchOutput, PackagedRpm, PrepareOutput, SignOutput};
use crate::build::{BuildInputs, BuildOutput, KernelInputs};
use crate::distro::{Distro, Family, KpatchMode};
use crate::fetch::FetchedKernel;
use crate::plan::Job;
use crate::prepare::kbuild_targets::{self, BuildTargets};
use crate::recipe::{Backend, Recipe, Target};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// A job with what it needs resolved: its recipe, target and distro.
#[derive(Clone, Copy)]
pub struct JobSpec<'a> {
    pub job: &'a Job,
    pub recipe: &'a Recipe,
    pub target: &'a Target,
    pub distro: &'a Distro,
}

/// Progress notes ("downloading kernel packages") for a job.
pub type Note<'a> = &'a (dyn Fn(&str) + Sync);

/// What fetch downloads beyond what the build needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelImage {
    /// Also the kernel image and modules (verify boots them).
    Wanted,
    /// Only the build inputs (`khotfix build`).
    NotWanted,
}

/// fetch: the kernel packages the job's backend needs, verified and cached.
pub fn fetch(spec: JobSpec, image: KernelImage, note: Note) -> Result<FetchOutput> {
    let mut opts = crate::fetch::FetchOptions::from_env()?;
    opts.deb_image = image == KernelImage::Wanted;
    opts.deb_kpatch = spec.target.backend == Backend::Kpatch;
    note("downloading kernel packages");
    crate::fetch::fetch_job(spec.job, spec.distro, &opts)
}

/// What prepare produced, with the report's summary and detail.
pub struct Prepared {
    pub output: PrepareOutput,
    pub summary: Option<String>,
    pub detail: serde_json::Value,
}

/// prepare: kbuild needs only the module source; kpatch checks the patches
/// (preflight, then against the kernel's own tree) and lays out what
/// kpatch-build builds against.
pub fn prepare(
    spec: JobSpec,
    fetched: &FetchOutput,
    work_dir: &Path,
    note: Note,
) -> Result<Prepared> {
    match spec.target.backend {
        Backend::Kbuild => {
            let dir = spec
                .target
                .module_source
                .as_ref()
                .context("kbuild target without module_source")?;
            if !dir.join("Kbuild").is_file() && !dir.join("Makefile").is_file() {
                bail!(
                    "module source {} has neither a Kbuild nor a Makefile",
                    dir.display()
                );
            }
            Ok(Prepared {
                output: PrepareOutput::ModuleSource { dir: dir.clone() },
                summary: None,
                detail: serde_json::Value::Null,
            })
        }
        Backend::Kpatch => {
            let report = crate::prepare::preflight::analyze_patches(&spec.target.patches, false)?;
            if report.exit_code() != crate::util::exit::OK {
                bail!(
                    "preflight: the patches use what kpatch cannot handle: {}",
                    serde_json::to_string(&report)?
                );
            }
            match (fetched, spec.distro.kpatch_mode) {
                (FetchedKernel::Deb(k), _) => prepare_deb_tree(spec, k, note),
                (FetchedKernel::Rpm(k), KpatchMode::Srpm) => prepare_srpm(spec, k, work_dir, note),
                (FetchedKernel::Rpm(_), mode) => bail!(
                    "prepare: a kpatch source tree for {} ({mode:?} mode) is not wired in yet",
                    spec.distro.name
                ),
            }
        }
    }
}

/// prepare, `-r SRPM` distros: the patches checked against the source RPM's
/// tree, and vmlinux out of kernel-debuginfo.
fn prepare_srpm(
    spec: JobSpec,
    k: &crate::fetch::RpmKernel,
    work_dir: &Path,
    note: Note,
) -> Result<Prepared> {
    note("checking the patches against the source RPM's tree");
    let check =
        crate::prepare::check_patches_against_srpm(&k.source_rpm, work_dir, &spec.target.patches)?;
    let member = crate::prepare::srpm::debuginfo_vmlinux_path(&spec.job.kernel);
    let vmlinux = work_dir.join("vmlinux");
    note("extracting vmlinux from kernel-debuginfo");
    crate::prepare::srpm::extract_member(&k.debuginfo_rpm, &member, &vmlinux)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Prepared {
        output: PrepareOutput::SourceRpm { vmlinux },
        summary: Some("patches apply to the source RPM's tree".into()),
        detail: serde_json::to_value(&check)?,
    })
}

/// prepare, Debian kpatch: the kernel's shared tree (laid out once per
/// kernel), the patches checked against it, and the kbuild targets.
fn prepare_deb_tree(spec: JobSpec, k: &crate::fetch::DebKernel, note: Note) -> Result<Prepared> {
    use crate::prepare::kernel_tree;
    let kp = k
        .kpatch
        .as_ref()
        .context("prepare: fetch did not download the kernel source (kpatch inputs)")?;
    let source_digest = k
        .files
        .iter()
        .find(|f| f.path == kp.source_deb)
        .map(|f| f.checksum.clone())
        .with_context(|| format!("prepare: no fetched digest for {}", kp.source_deb.display()))?;
    let config = crate::config::Config::load()?;
    let inputs = kernel_tree::TreeInputs {
        kernel: &spec.job.kernel,
        source_deb: &kp.source_deb,
        source_digest: &source_digest,
        headers_dir: &k.headers_dir,
    };
    let tree = kernel_tree::ensure(&config.cache_dir.join("kernel-trees"), &inputs, &note)?;
    note("checking the patches against the kernel tree");
    let check = {
        let _lock = tree.lock()?;
        crate::prepare::apply::check(&tree.source, &spec.target.patches)
            .map_err(|e| anyhow::anyhow!("{e}"))?
    };
    let changed = changed_files(&spec.target.patches)?;
    let kconfig = kbuild_targets::KernelConfig::parse(
        &std::fs::read_to_string(&tree.config)
            .with_context(|| format!("reading {}", tree.config.display()))?,
    );
    let targets = kbuild_targets::targets_for(&tree.source, &kconfig, &changed);
    let summary = match &targets {
        BuildTargets::Modules { modules } => format!("module-only build: {}", modules.join(" ")),
        BuildTargets::Full { reason } => {
            let n = kbuild_targets::full_build_estimate(reason);
            note(&n);
            n
        }
    };
    Ok(Prepared {
        detail: serde_json::json!({ "apply": check, "targets": targets, "tree": tree }),
        output: PrepareOutput::KernelTree {
            source: tree.source,
            config: tree.config,
            targets,
        },
        summary: Some(summary),
    })
}

/// Tree-relative paths the patches change, in order, without repeats.
fn changed_files(patches: &[PathBuf]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for p in patches {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let parsed = crate::patchfile::Patch::parse(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        for f in parsed.files {
            if !out.contains(&f.path) {
                out.push(f.path);
            }
        }
    }
    Ok(out)
}

/// The builder's inputs for a job: what fetch and prepare produced, in the
/// shape the backend builds against, and the verified package digests that
/// key the build cache.
pub fn build_inputs(
    spec: JobSpec,
    fetched: &FetchOutput,
    prepared: &PrepareOutput,
) -> Result<BuildInputs> {
    let kernel = match (fetched, prepared) {
        (FetchedKernel::Deb(k), PrepareOutput::ModuleSource { .. }) => KernelInputs::Headers {
            root: k.root.clone(),
            kdir: k
                .headers_dir
                .file_name()
                .context("the fetched headers directory has no name")?
                .to_string_lossy()
                .into_owned(),
        },
        (
            FetchedKernel::Deb(k),
            PrepareOutput::KernelTree {
                source,
                config,
                targets,
            },
        ) => KernelInputs::PreparedTree {
            source: source.clone(),
            config: config.clone(),
            vmlinux: k
                .kpatch
                .as_ref()
                .context("fetch did not stream vmlinux out of the -dbg package")?
                .vmlinux
                .clone(),
            targets: targets.kpatch_targets(),
        },
        (FetchedKernel::Rpm(k), PrepareOutput::SourceRpm { vmlinux }) => KernelInputs::Srpm {
            srpm: k.source_rpm.clone(),
            vmlinux: vmlinux.clone(),
        },
        (f, p) => bail!(
            "build: {} on a {:?}-family distro ({} prepared) is not wired in yet",
            spec.target.backend,
            family_of(f),
            prepared_kind(p)
        ),
    };
    let module_source = match prepared {
        PrepareOutput::ModuleSource { dir } => Some(dir.clone()),
        _ => None,
    };
    Ok(BuildInputs {
        job: spec.job.clone(),
        kernel,
        kernel_digests: fetched
            .files()
            .iter()
            .map(|f| (f.package.clone(), f.checksum.clone()))
            .collect(),
        patches: spec.target.patches.clone(),
        module_source,
        skip_compiler_check: spec.target.skip_compiler_check,
    })
}

fn family_of(f: &FetchOutput) -> Family {
    match f {
        FetchedKernel::Deb(_) => Family::Deb,
        FetchedKernel::Rpm(_) => Family::Rpm,
    }
}

fn prepared_kind(p: &PrepareOutput) -> &'static str {
    match p {
        PrepareOutput::ModuleSource { .. } => "a module source",
        PrepareOutput::SourceRpm { .. } => "a source RPM",
        PrepareOutput::KernelTree { .. } => "a kernel tree",
    }
}

/// The signing keys directory `khotfix keys generate` writes.
pub struct KeysDir<'a>(pub &'a Path);

impl KeysDir<'_> {
    /// A file of the directory, or an error naming what is missing.
    pub fn file(&self, name: &str) -> Result<PathBuf> {
        let p = self.0.join(name);
        if !p.is_file() {
            bail!(
                "{}: missing from the keys directory {} (make one with `khotfix keys generate`)",
                name,
                self.0.display()
            );
        }
        Ok(p)
    }
}

/// sign: the built module signed with the module key, written as
/// `<out_dir>/<job-id>/kpatch-<id>.ko`.
pub fn sign(
    spec: JobSpec,
    built: &BuildOutput,
    keys: &KeysDir,
    out_dir: &Path,
) -> Result<(SignOutput, String)> {
    let key_path = keys.file(crate::keys::MODULE_KEY_FILE)?;
    let cert = keys.file(crate::keys::MODULE_CERT_FILE)?;
    let pass = crate::keys::read_passphrase(None)?;
    let key = crate::keys::ModuleKey::load(&key_path, &cert, pass.as_ref())?;
    let out = out_dir
        .join(&spec.job.id)
        .join(spec.recipe.hotfix.module_file());
    std::fs::create_dir_all(out.parent().context("sign output has no parent")?)?;
    let r = crate::sign::sign_file(&built.module, &out, &key, crate::sign::HashAlgo::Sha256)?;
    Ok((
        SignOutput {
            module: out,
            cert: Some(cert),
        },
        format!("signed by {:?}", r.signer),
    ))
}

/// package: the signed module as a signed `kernel-hotfix-<id>-<kver>` RPM
/// (and what [`crate::package::build_rpm`] reported, for the run report).
pub fn package(
    spec: JobSpec,
    signed: &SignOutput,
    keys: &KeysDir,
    out_dir: &Path,
) -> Result<(PackagedRpm, crate::package::PackageOutput)> {
    let secret = keys.file(crate::keys::PGP_SECRET_FILE)?;
    let public = keys.file(crate::keys::PGP_PUBLIC_FILE)?;
    let pass = crate::keys::read_passphrase(None)?;
    let signer = crate::keys::PackageSigner::load(&secret, pass.as_ref())?;
    let input = crate::package::PackageInput::for_target(
        spec.recipe,
        spec.target,
        &spec.job.kernel,
        spec.distro,
        &signed.module,
    )?;
    let opts = crate::package::BuildOptions::from_env()?;
    let out = crate::package::build_rpm(&input, &signer, out_dir, &opts)?;
    let rpm = PackagedRpm {
        rpm: out.path.clone(),
        key: public,
        nevra: out.nevra.clone(),
    };
    Ok((rpm, out))
}
