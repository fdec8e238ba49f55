//! The real stage table `khotfix run` uses: each stage module plugs in with
//! one `.stage(kind, …)` call. The work is in [`super::stages`] (one typed
//! function per stage, shared with the CLI); the adapters here only pick the
//! typed outputs of earlier stages out of [`JobContext::artifacts`] and wrap
//! the result in a [`StageOutput`] with its report summary.
//!
//! The keys directory (`--keys DIR`) has the layout `khotfix keys generate`
//! writes (see [`crate::keys`]).

use super::artifacts::{StageData, VerifyOutput};
use super::stages::{self, JobSpec, KeysDir};
use super::{JobContext, Pipeline, PublishOutput, RunSettings, Stage, StageKind, StageOutput};
use crate::util::fsx;
use anyhow::{Context, Result};
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
        .stage(StageKind::Verify, verify)
        .publisher(publish)
}

fn keys_dir(s: &RunSettings) -> Result<KeysDir<'_>> {
    s.keys
        .as_deref()
        .map(KeysDir)
        .context("no signing keys: pass --keys DIR (a directory made by `khotfix keys generate`)")
}

fn spec<'a>(cx: &'a JobContext) -> JobSpec<'a> {
    JobSpec {
        job: cx.job,
        recipe: cx.recipe,
        target: cx.target,
        distro: cx.distro,
    }
}

/// fetch: the kernel packages, verified and cached.
fn fetch(cx: &JobContext) -> Result<StageOutput> {
    let fetched = stages::fetch(spec(cx), stages::KernelImage::Wanted, &|m| cx.note(m))?;
    let files = fetched.files().len();
    let detail = serde_json::to_value(fetched.files())?;
    Ok(StageOutput::of(StageData::Fetch(fetched))
        .summary(format!("{files} package(s)"))
        .detail(detail))
}

/// prepare: what the build compiles against.
fn prepare(cx: &JobContext) -> Result<StageOutput> {
    let fetched = cx.artifacts.fetched()?;
    let p = stages::prepare(spec(cx), fetched, &cx.work_dir, &|m| cx.note(m))?;
    let mut out = StageOutput::of(StageData::Prepare(p.output)).detail(p.detail);
    if let Some(s) = p.summary {
        out = out.summary(s);
    }
    Ok(out)
}

struct BuildStage;

impl Stage for BuildStage {
    fn run(&self, cx: &JobContext) -> Result<StageOutput> {
        use crate::build::{self, BuildSettings};
        let inputs =
            stages::build_inputs(spec(cx), cx.artifacts.fetched()?, cx.artifacts.prepared()?)?;
        let config = crate::config::Config::load()?;
        let engine = build::container::Engine::from_config(&config)?;
        let image = build::builder::ensure_on_first_use(
            &engine,
            &cx.distro.builder,
            &config.image_options(config.cache_dir.join("logs"), None),
            &|m| cx.note(m),
        )?;
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
        let out = build::build_job(&engine, &inputs, &settings, &crate::progress::Quiet)?;
        let summary = if out.cache_hit {
            "module from the build cache"
        } else {
            "module built"
        };
        let summary = format!("{summary} ({})", out.image);
        let detail = serde_json::to_value(&out)?;
        Ok(StageOutput::of(StageData::Build(out))
            .summary(summary)
            .detail(detail))
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
        let keys = keys_dir(cx.settings)?;
        let (signed, summary) = stages::sign(spec(cx), cx.artifacts.built()?, &keys, &cx.work_dir)?;
        Ok(StageOutput::of(StageData::Sign(signed)).summary(summary))
    }
    fn extra_inputs(&self, cx: &JobContext) -> Result<BTreeMap<String, String>> {
        let keys = keys_dir(cx.settings)?;
        file_input("module_cert", &keys.file(crate::keys::MODULE_CERT_FILE)?)
    }
}

struct PackageStage;

impl Stage for PackageStage {
    fn run(&self, cx: &JobContext) -> Result<StageOutput> {
        let keys = keys_dir(cx.settings)?;
        let (p, report) = stages::package(spec(cx), cx.artifacts.signed()?, &keys, &cx.work_dir)?;
        let summary = p.nevra.clone();
        let detail = serde_json::to_value(&report)?;
        Ok(StageOutput::of(StageData::Package(p))
            .summary(summary)
            .detail(detail))
    }
    fn extra_inputs(&self, cx: &JobContext) -> Result<BTreeMap<String, String>> {
        let keys = keys_dir(cx.settings)?;
        file_input("rpm_key", &keys.file(crate::keys::PGP_PUBLIC_FILE)?)
    }
}

/// verify: the signed module, its RPM and the target kernel as fetch
/// downloaded it (never the host's own kernel: the host may run another
/// kernel, or none of this ABI); writes `verify.json` and fails the job on
/// any failed check.
pub fn verify(cx: &JobContext) -> Result<StageOutput> {
    let a = cx.artifacts;
    let signed = a.signed()?;
    let rpm = a.package.as_ref();
    let inputs = crate::verify::VerifyInputs {
        kernel: cx.job.kernel.to_string(),
        module: signed.module.clone(),
        rpm: rpm.map(|p| p.rpm.clone()),
        rpm_key: rpm.map(|p| p.key.clone()).or_else(|| {
            cx.settings
                .keys
                .as_ref()
                .map(|k| k.join(crate::keys::PGP_PUBLIC_FILE))
                .filter(|p| p.is_file())
        }),
        module_cert: signed.cert.clone(),
        kernel_image: a.kernel_image().map(Path::to_path_buf),
        modules_dir: a.modules_dir().map(Path::to_path_buf),
        boot: std::env::var_os("KHOTFIX_VERIFY_NO_BOOT").is_none(),
        work_dir: Some(cx.work_dir.clone()),
    };
    cx.note(if inputs.kernel_image.is_some() && inputs.boot {
        "checking and booting under qemu"
    } else {
        "checking"
    });
    let report = crate::verify::verify(&inputs)?;
    let json = serde_json::to_value(&report)?;
    let path = cx.work_dir.join("verify.json");
    fsx::write_atomic(&path, serde_json::to_string_pretty(&json)?.as_bytes())?;
    let out = StageOutput::of(StageData::Verify(VerifyOutput { report: path }))
        .summary(report.summary())
        .detail(json);
    Ok(match report.failure() {
        None => out,
        Some(why) => out.failed(why),
    })
}

/// publish: the verified RPMs into `settings.repo`, metadata signed with the
/// package key.
fn publish(rpms: &[PathBuf], s: &RunSettings) -> Result<PublishOutput> {
    let secret = keys_dir(s)?.file(crate::keys::PGP_SECRET_FILE)?;
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
        reporter: s.reporter.clone(),
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
