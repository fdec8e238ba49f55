//! The real stage table `khotfix run` uses: each stage module plugs in with
//! one `.stage(kind, …)` call. Stage logic stays in its module; the adapters
//! here only translate the previous stages' artifacts into that module's
//! typed inputs and its typed output back into artifacts.
//!
//! Artifacts handed along (see [`super::artifact`]):
//! fetch → `headers_root` (Debian) or `source_rpm`/`debuginfo_rpm`/`devel_rpm`
//! (RPM), and `kernel_image` when the image was fetched; prepare →
//! `module_source` (kbuild) or `vmlinux` (kpatch `-r SRPM` distros); build →
//! `unsigned_module`; sign → `module`, `module_cert`; package → `rpm`,
//! `rpm_key`; verify → `report`.
//!
//! The keys directory (`--keys DIR`) has the layout `khotfix keys generate`
//! writes (see [`crate::keys`]).

use super::{
    artifact, JobContext, Pipeline, PublishOutput, RunSettings, Stage, StageKind, StageOutput,
};
use crate::distro::{Distro, Family};
use crate::recipe::Backend;
use crate::util::fsx;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The pipeline of this build.
pub fn default_pipeline() -> Pipeline {
    Pipeline::new()
        .stage(StageKind::Fetch, fetch)
        .stage(StageKind::Prepare, prepare)
        .stage(StageKind::Build, BuildStage)
        .stage(StageKind::Sign, SignStage)
        .stage(StageKind::Package, PackageStage)
        .stage(StageKind::Verify, crate::verify::stage)
        .publisher(publish)
}

fn keys_dir(cx_settings: &RunSettings) -> Result<&Path> {
    cx_settings
        .keys
        .as_deref()
        .context("no signing keys: pass --keys DIR (a directory made by `khotfix keys generate`)")
}

fn key_file(dir: &Path, name: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    if !p.is_file() {
        bail!(
            "{}: missing from the keys directory {} (make one with `khotfix keys generate`)",
            name,
            dir.display()
        );
    }
    Ok(p)
}

/// The built-in distro with the `$KHOTFIX_MIRRORS` entries that name one of
/// its repositories applied: `khotfix run --from-repos` plans with them, so
/// the fetch stage must download from the same mirrors.
fn distro_with_env_mirrors(name: &str) -> Result<Distro> {
    let mut d = Distro::builtin(name)?;
    let mine: Vec<String> = crate::fetch::env_mirror_overrides()
        .into_iter()
        .filter(|e| {
            e.split_once('=')
                .is_some_and(|(r, _)| d.repos.iter().any(|x| x.name == r.trim()))
        })
        .collect();
    crate::fetch::apply_mirror_overrides(&mut d, &mine)?;
    Ok(d)
}

/// fetch: the kernel packages, verified and cached.
fn fetch(cx: &JobContext) -> Result<StageOutput> {
    let distro = distro_with_env_mirrors(&cx.job.distro)?;
    let mut opts = crate::fetch::FetchOptions::from_env()?;
    opts.progress = crate::fetch::ProgressMode::Quiet;
    opts.deb_kpatch = cx.target.backend == Backend::Kpatch;
    cx.note("downloading kernel packages");
    let fetched = crate::fetch::fetch_job(cx.job, &distro, &opts)?;
    let out = match &fetched {
        crate::fetch::FetchedKernel::Deb(k) => {
            let mut o = StageOutput::new()
                .artifact("headers_root", &k.root)
                .artifact("headers_dir", &k.headers_dir);
            if let Some(v) = &k.vmlinuz {
                o = o.artifact(artifact::KERNEL_IMAGE, v);
            }
            if let Some(m) = &k.modules_dir {
                o = o.artifact(artifact::MODULES_DIR, m);
            }
            if let Some(kp) = &k.kpatch {
                o = o
                    .artifact(artifact::SOURCE_DEB, &kp.source_deb)
                    .artifact(artifact::VMLINUX, &kp.vmlinux);
            }
            o
        }
        crate::fetch::FetchedKernel::Rpm(k) => StageOutput::new()
            .artifact("source_rpm", &k.source_rpm)
            .artifact("debuginfo_rpm", &k.debuginfo_rpm)
            .artifact("debuginfo_common_rpm", &k.debuginfo_common_rpm)
            .artifact("devel_rpm", &k.devel_rpm),
    };
    let files = fetched.files().len();
    Ok(out
        .summary(format!("{files} package(s)"))
        .detail(serde_json::to_value(fetched.files())?))
}

/// prepare: kbuild needs only the module source; kpatch on distros
/// kpatch-build knows (`-r SRPM`) needs vmlinux out of kernel-debuginfo.
fn prepare(cx: &JobContext) -> Result<StageOutput> {
    let distro = Distro::builtin(&cx.job.distro)?;
    match cx.target.backend {
        Backend::Kbuild => {
            let src = cx
                .target
                .module_source
                .as_ref()
                .context("kbuild target without module_source")?;
            if !src.join("Kbuild").is_file() && !src.join("Makefile").is_file() {
                bail!(
                    "module source {} has neither a Kbuild nor a Makefile",
                    src.display()
                );
            }
            Ok(StageOutput::new().artifact("module_source", src))
        }
        Backend::Kpatch => {
            let report = crate::prepare::preflight::analyze_patches(&cx.target.patches, false)?;
            if report.exit_code() != crate::util::exit::OK {
                bail!(
                    "preflight: the patches use what kpatch cannot handle: {}",
                    serde_json::to_string(&report)?
                );
            }
            if distro.family == Family::Deb {
                return prepare_deb_tree(cx);
            }
            if distro.kpatch_mode != crate::distro::KpatchMode::Srpm {
                bail!("prepare: a kpatch source tree for {} ({:?} mode) is not wired into `khotfix run` yet", distro.name, distro.kpatch_mode);
            }
            let srpm = cx.artifact(StageKind::Fetch, "source_rpm")?;
            cx.note("checking the patches against the source RPM's tree");
            let check =
                crate::prepare::check_patches_against_srpm(srpm, &cx.work_dir, &cx.target.patches)?;
            let debuginfo = cx.artifact(StageKind::Fetch, "debuginfo_rpm")?;
            let member = crate::prepare::srpm::debuginfo_vmlinux_path(&cx.job.kernel);
            let vmlinux = cx.work_dir.join("vmlinux");
            cx.note("extracting vmlinux from kernel-debuginfo");
            crate::prepare::srpm::extract_member(debuginfo, &member, &vmlinux)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(StageOutput::new()
                .artifact(artifact::VMLINUX, vmlinux)
                .summary("patches apply to the source RPM's tree")
                .detail(serde_json::to_value(&check)?))
        }
    }
}

/// prepare, Debian kpatch: the kernel's shared tree (laid out once per
/// kernel), the patches checked against it, and the kbuild targets.
fn prepare_deb_tree(cx: &JobContext) -> Result<StageOutput> {
    use crate::prepare::{kbuild_targets, kernel_tree};
    let fetched = cx
        .prior
        .get(&StageKind::Fetch)
        .context("prepare: no fetch output")?;
    let digest_of = |path: &Path| -> Result<String> {
        fetched
            .detail
            .as_array()
            .and_then(|files| {
                files.iter().find_map(|f| {
                    (f.get("path")?.as_str()? == path.to_str()?)
                        .then(|| f.get("checksum")?.as_str().map(str::to_string))?
                })
            })
            .with_context(|| format!("prepare: no fetched digest for {}", path.display()))
    };
    let source_deb = cx.artifact(StageKind::Fetch, artifact::SOURCE_DEB)?;
    let headers_dir = cx.artifact(StageKind::Fetch, "headers_dir")?;
    let config = crate::config::Config::load()?;
    let inputs = kernel_tree::TreeInputs {
        kernel: &cx.job.kernel,
        source_deb,
        source_digest: &digest_of(source_deb)?,
        headers_dir,
    };
    let tree = kernel_tree::ensure(&config.cache_dir.join("kernel-trees"), &inputs, &|m| {
        cx.note(m)
    })?;
    cx.note("checking the patches against the kernel tree");
    let check = {
        let _lock = tree.lock()?;
        crate::prepare::apply::check(&tree.source, &cx.target.patches)
            .map_err(|e| anyhow::anyhow!("{e}"))?
    };
    let changed = changed_files(&cx.target.patches)?;
    let kconfig = kbuild_targets::KernelConfig::parse(
        &std::fs::read_to_string(&tree.config)
            .with_context(|| format!("reading {}", tree.config.display()))?,
    );
    let targets = kbuild_targets::targets_for(&tree.source, &kconfig, &changed);
    let summary = match &targets {
        kbuild_targets::BuildTargets::Modules { modules } => {
            format!("module-only build: {}", modules.join(" "))
        }
        kbuild_targets::BuildTargets::Full { reason } => {
            let note = kbuild_targets::full_build_estimate(reason);
            cx.note(&note);
            note
        }
    };
    Ok(StageOutput::new()
        .artifact(artifact::TREE_SOURCE, &tree.source)
        .artifact(artifact::TREE_CONFIG, &tree.config)
        .summary(summary)
        .detail(serde_json::json!({ "apply": check, "targets": targets, "tree": tree })))
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

struct BuildStage;

impl Stage for BuildStage {
    fn run(&self, cx: &JobContext) -> Result<StageOutput> {
        use crate::build::{self, BuildInputs, BuildSettings, KernelInputs};
        let config = crate::config::Config::load()?;
        let engine = build::container::Engine::from_config(&config)?;
        let distro = Distro::builtin(&cx.job.distro)?;
        let kernel = match (cx.target.backend, distro.family) {
            (Backend::Kbuild, Family::Deb) => {
                let root = cx.artifact(StageKind::Fetch, "headers_root")?.to_path_buf();
                let hdir = cx.artifact(StageKind::Fetch, "headers_dir")?;
                let kdir = hdir
                    .file_name()
                    .context("headers_dir has no name")?
                    .to_string_lossy()
                    .to_string();
                KernelInputs::Headers { root, kdir }
            }
            (Backend::Kpatch, Family::Deb) => {
                let targets: crate::prepare::kbuild_targets::BuildTargets = serde_json::from_value(
                    cx.prior
                        .get(&StageKind::Prepare)
                        .and_then(|o| o.detail.get("targets"))
                        .cloned()
                        .context("build: prepare recorded no kbuild targets")?,
                )?;
                KernelInputs::PreparedTree {
                    source: cx
                        .artifact(StageKind::Prepare, artifact::TREE_SOURCE)?
                        .to_path_buf(),
                    config: cx
                        .artifact(StageKind::Prepare, artifact::TREE_CONFIG)?
                        .to_path_buf(),
                    vmlinux: cx
                        .artifact(StageKind::Fetch, artifact::VMLINUX)?
                        .to_path_buf(),
                    targets: targets.kpatch_targets(),
                }
            }
            (Backend::Kpatch, Family::Rpm) => KernelInputs::Srpm {
                srpm: cx.artifact(StageKind::Fetch, "source_rpm")?.to_path_buf(),
                vmlinux: cx
                    .artifact(StageKind::Prepare, artifact::VMLINUX)?
                    .to_path_buf(),
            },
            (b, f) => {
                bail!("build: {b} on a {f:?}-family distro is not wired into `khotfix run` yet")
            }
        };
        let kernel_digests: Vec<(String, String)> = cx
            .prior
            .get(&StageKind::Fetch)
            .and_then(|o| o.detail.as_array())
            .map(|files| {
                files
                    .iter()
                    .filter_map(|f| {
                        Some((
                            f.get("package")?.as_str()?.to_string(),
                            f.get("checksum")?.as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let image = build::builder::ensure_on_first_use(
            &engine,
            &distro.builder,
            &config.image_options(config.cache_dir.join("logs"), None),
            &|m| cx.note(m),
        )?;
        let inputs = BuildInputs {
            job: cx.job.clone(),
            kernel,
            kernel_digests,
            patches: cx.target.patches.clone(),
            module_source: cx.target.module_source.clone(),
            skip_compiler_check: cx.target.skip_compiler_check,
        };
        let settings = BuildSettings {
            out_dir: cx.work_dir.clone(),
            work_dir: config.cache_dir.join("work"),
            log_dir: cx.work_dir.join("logs"),
            make_jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            timeout: Some(config.build_timeout),
            cache: Some(build::cache::BuildCache::new(config.build_cache_dir())),
            image: Some(image.tag),
            kpatch_build: None,
        };
        cx.note("building in the builder container");
        let out = build::build_job(&engine, &inputs, &settings, None)?;
        let summary = if out.cache_hit {
            "module from the build cache"
        } else {
            "module built"
        };
        let mut o = StageOutput::new().artifact(artifact::UNSIGNED_MODULE, &out.module);
        // A build-cache hit compiles nothing and writes no log; the runner
        // checks that every artifact exists, so only a written log is one.
        if out.log.is_file() {
            o = o.artifact("log", &out.log);
        }
        Ok(o.summary(format!("{summary} ({})", out.image))
            .detail(serde_json::to_value(&out)?))
    }
}

/// sha256 of a file, for [`Stage::extra_inputs`]: a new key re-signs.
fn file_input(name: &str, path: &Path) -> Result<BTreeMap<String, String>> {
    Ok(BTreeMap::from([(
        name.to_string(),
        fsx::sha256_file(path)?,
    )]))
}

struct SignStage;

impl Stage for SignStage {
    fn run(&self, cx: &JobContext) -> Result<StageOutput> {
        let dir = keys_dir(cx.settings)?;
        let key_path = key_file(dir, crate::keys::MODULE_KEY_FILE)?;
        let cert = key_file(dir, crate::keys::MODULE_CERT_FILE)?;
        let pass = crate::keys::read_passphrase(None)?;
        let key = crate::keys::ModuleKey::load(&key_path, &cert, pass.as_ref())?;
        let input = cx.artifact(StageKind::Build, artifact::UNSIGNED_MODULE)?;
        // `<job-id>/<module file>`: the layout `package::inputs_from_build_dir` reads.
        let out = cx
            .work_dir
            .join(&cx.job.id)
            .join(cx.recipe.hotfix.module_file());
        std::fs::create_dir_all(out.parent().context("sign output has no parent")?)?;
        let r = crate::sign::sign_file(input, &out, &key, crate::sign::HashAlgo::Sha256)?;
        Ok(StageOutput::new()
            .artifact(artifact::MODULE, &out)
            .artifact(artifact::MODULE_CERT, &cert)
            .summary(format!("signed by {:?}", r.signer)))
    }
    fn extra_inputs(&self, cx: &JobContext) -> Result<BTreeMap<String, String>> {
        let dir = keys_dir(cx.settings)?;
        file_input(
            "module_cert",
            &key_file(dir, crate::keys::MODULE_CERT_FILE)?,
        )
    }
}

struct PackageStage;

impl Stage for PackageStage {
    fn run(&self, cx: &JobContext) -> Result<StageOutput> {
        let dir = keys_dir(cx.settings)?;
        let secret = key_file(dir, crate::keys::PGP_SECRET_FILE)?;
        let public = key_file(dir, crate::keys::PGP_PUBLIC_FILE)?;
        let pass = crate::keys::read_passphrase(None)?;
        let signer = crate::keys::PackageSigner::load(&secret, pass.as_ref())?;
        let signed = cx.artifact(StageKind::Sign, artifact::MODULE)?;
        let sign_dir = signed
            .parent()
            .and_then(Path::parent)
            .context("signed module path too short")?;
        let inputs =
            crate::package::inputs_from_build_dir(cx.recipe, sign_dir, Some(&cx.job.kernel))?;
        let input = inputs
            .into_iter()
            .find(|i| i.ko_path == signed)
            .with_context(|| {
                format!(
                    "package: {} was not found as a signed module of {}",
                    signed.display(),
                    cx.job.id
                )
            })?;
        let opts = crate::package::BuildOptions::from_env()?;
        let out = crate::package::build_rpm(&input, &signer, &cx.work_dir, &opts)?;
        Ok(StageOutput::new()
            .artifact(artifact::RPM, &out.path)
            .artifact(artifact::RPM_KEY, &public)
            .summary(out.nevra.clone())
            .detail(serde_json::to_value(&out)?))
    }
    fn extra_inputs(&self, cx: &JobContext) -> Result<BTreeMap<String, String>> {
        let dir = keys_dir(cx.settings)?;
        file_input("rpm_key", &key_file(dir, crate::keys::PGP_PUBLIC_FILE)?)
    }
}

/// publish: the verified RPMs into `settings.repo`, metadata signed with the
/// package key.
fn publish(rpms: &[PathBuf], s: &RunSettings) -> Result<PublishOutput> {
    let dir = keys_dir(s)?;
    let secret = key_file(dir, crate::keys::PGP_SECRET_FILE)?;
    let pass = crate::keys::read_passphrase(None)?;
    let key = crate::keys::PackageSigner::load_unlocked(&secret, pass.as_ref())?;
    let repo =
        std::path::absolute(&s.repo).with_context(|| format!("resolving {}", s.repo.display()))?;
    let report = crate::publish::publish(&crate::publish::PublishOptions {
        repo: repo.clone(),
        rpms: rpms.to_vec(),
        keep: None,
        key,
        compress: crate::publish::Compression::parse("gz")?,
        base_url: None,
    })?;
    // The parts this run's packages went to (one per dist tag).
    let known = crate::publish::layout::known_dists();
    let mut parts: Vec<crate::publish::layout::Part> = rpms
        .iter()
        .filter_map(|p| p.file_name())
        .map(|f| crate::publish::layout::Part {
            dist: crate::publish::layout::dist_of_file_name(&f.to_string_lossy(), &known)
                .map(str::to_string),
        })
        .collect();
    parts.sort();
    parts.dedup();
    let base = format!("file://{}", repo.display());
    let lines: Vec<String> = parts
        .iter()
        .map(|p| {
            format!(
                "baseurl={} (full file: {})",
                p.url(&base),
                p.dir(&repo).join(crate::publish::REPO_FILE).display()
            )
        })
        .collect();
    Ok(PublishOutput {
        client_repo: (!lines.is_empty()).then(|| lines.join("; ")),
        repo,
        detail: serde_json::to_value(&report)?,
    })
}
