//! `khotfix build`, `khotfix builder build`.
use super::progress::Spinner;
use clap::{Args, Subcommand};
use indicatif::MultiProgress;
use khotfix::build::{self, builder, container::Engine, BuildInputs, BuildSettings};
use khotfix::config::Config;
use khotfix::distro::{Distro, Family};
use khotfix::kernel::KernelRelease;
use khotfix::plan::Plan;
use khotfix::recipe::{Backend, Recipe};
use khotfix::run::stages::{self, JobSpec};
use khotfix::util::exit;
use serde::Serialize;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Args)]
pub struct BuildArgs {
    pub recipe: PathBuf,
    /// Build only for this kernel release (and use it as the known kernel list).
    #[arg(long)]
    pub kernel: Option<String>,
    /// Jobs to build at once.
    #[arg(short = 'j', long, default_value_t = 1)]
    pub jobs: usize,
    /// `make -j` inside each build container.
    #[arg(long, default_value_t = 2)]
    pub make_jobs: usize,
    /// Output directory: modules in OUT/<job>/, logs in OUT/logs/.
    #[arg(long, default_value = "khotfix-build")]
    pub out: PathBuf,
    /// Ignore the build cache (results are still stored in it).
    #[arg(long)]
    pub no_cache: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum BuilderCmd {
    /// Build a builder image from containers/NAME (reused when unchanged).
    Build {
        name: String,
        /// Base image (centos7, alinux3); debian12 makes its own with mmdebstrap.
        #[arg(long)]
        base: Option<String>,
        /// Rebuild even when an image with the same content exists.
        #[arg(long)]
        force: bool,
        /// The kpatch release tarball (offline machines); checked against the
        /// pinned release. Default: $KHOTFIX_KPATCH_SOURCE, the config file's
        /// `kpatch_source`, else a download.
        #[arg(long, value_name = "FILE")]
        kpatch_source: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct JobReport {
    job: String,
    kernel: String,
    backend: Backend,
    ok: bool,
    cache_hit: bool,
    module: Option<PathBuf>,
    log: Option<PathBuf>,
    seconds: f64,
    error: Option<String>,
}

/// The same fetch and prepare `khotfix run` does, up to the builder's inputs.
fn kernel_inputs(spec: JobSpec, out: &std::path::Path) -> anyhow::Result<BuildInputs> {
    let note = |m: &str| eprintln!("khotfix: {}: {m}", spec.job.id);
    let fetched = stages::fetch(spec, stages::KernelImage::NotWanted, &note)?;
    let work_dir = out.join(&spec.job.id).join("prepare");
    std::fs::create_dir_all(&work_dir)?;
    let prepared = stages::prepare(spec, &fetched, &work_dir, &note)?;
    stages::build_inputs(spec, &fetched, &prepared.output)
}

pub fn build(a: BuildArgs) -> anyhow::Result<i32> {
    let recipe = Recipe::load(&a.recipe).map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = Config::load()?;
    let wanted = a.kernel.as_deref().map(KernelRelease::parse).transpose()?;
    let mut known: Vec<KernelRelease> = wanted.iter().cloned().collect();
    if wanted.is_none() {
        for t in &recipe.targets {
            let d = Distro::builtin(&t.distro)?;
            if let (Family::Deb, Some(meta)) = (d.family, &d.apt_metapackage) {
                known.push(khotfix::fetch::apt::current_kernel_memo(
                    Some(&khotfix::util::memo::Memo::new(
                        config.cache_dir.join("memo"),
                    )),
                    meta,
                )?);
            }
        }
    }
    let mut plan = Plan::expand(std::slice::from_ref(&recipe), &known)?;
    if let Some(k) = &wanted {
        plan.jobs.retain(|j| &j.kernel == k);
    }
    if plan.jobs.is_empty() {
        anyhow::bail!(
            "{}: no jobs to build{}",
            a.recipe.display(),
            a.kernel
                .as_deref()
                .map(|k| format!(" for kernel {k}"))
                .unwrap_or_default()
        );
    }
    let engine = Engine::from_config(&config)?;
    let mut inputs = Vec::new();
    let mut reports: Vec<Option<JobReport>> = Vec::new();
    for job in plan.jobs {
        let target = recipe
            .targets
            .iter()
            .find(|t| t.name == job.target)
            .ok_or_else(|| anyhow::anyhow!("job {}: target vanished", job.id))?;
        let distro = khotfix::fetch::distro_for_run(&job.distro)?;
        let spec = JobSpec {
            job: &job,
            recipe: &recipe,
            target,
            distro: &distro,
        };
        match kernel_inputs(spec, &a.out) {
            Ok(inp) => {
                reports.push(None);
                inputs.push(inp);
            }
            Err(e) => reports.push(Some(JobReport {
                job: job.id.clone(),
                kernel: job.kernel.to_string(),
                backend: job.backend,
                ok: false,
                cache_hit: false,
                module: None,
                log: None,
                seconds: 0.0,
                error: Some(format!("{e:#}")),
            })),
        }
    }
    // First use: build each missing builder image once, before any job.
    let mut builders: Vec<String> = Vec::new();
    for inp in &inputs {
        let d = Distro::builtin(&inp.job.distro)?;
        if !builders.contains(&d.builder) {
            builders.push(d.builder);
        }
    }
    for name in &builders {
        let opts = config.image_options(config.cache_dir.join("logs"), None);
        builder::ensure_on_first_use(&engine, name, &opts, &|m| eprintln!("khotfix: {m}"))?;
    }
    let cache = khotfix::build::cache::BuildCache::new(config.build_cache_dir());
    let settings = BuildSettings {
        out_dir: a.out.clone(),
        work_dir: config.cache_dir.join("work"),
        log_dir: a.out.join("logs"),
        make_jobs: a.make_jobs.max(1),
        timeout: Some(config.build_timeout),
        cache: if a.no_cache {
            None
        } else {
            Some(cache.clone())
        },
        image: None,
        kpatch_build: None,
    };
    let mp = MultiProgress::new();
    let tty = std::io::stderr().is_terminal() && !a.json;
    let progress = |inp: &BuildInputs| -> Box<dyn khotfix::progress::Reporter> {
        if tty {
            Box::new(Spinner::new(&mp, inp.job.id.clone()))
        } else {
            Box::new(khotfix::progress::Quiet)
        }
    };
    let results = build::build_all(&engine, &inputs, &settings, a.jobs, &progress);
    // With --no-cache, still store fresh results.
    let mut it = inputs.iter().zip(results);
    for slot in reports.iter_mut() {
        if slot.is_some() {
            continue;
        }
        let Some((inp, r)) = it.next() else { break };
        *slot = Some(match r {
            Ok(o) => {
                if a.no_cache {
                    let _ = cache.put(&o.cache_key, &o.job, &o.module, &o.image);
                }
                JobReport {
                    job: o.job,
                    kernel: o.kernel,
                    backend: o.backend,
                    ok: true,
                    cache_hit: o.cache_hit,
                    module: Some(o.module),
                    log: Some(o.log),
                    seconds: o.seconds,
                    error: None,
                }
            }
            Err(e) => JobReport {
                job: inp.job.id.clone(),
                kernel: inp.job.kernel.to_string(),
                backend: inp.job.backend,
                ok: false,
                cache_hit: false,
                module: None,
                log: Some(settings.log_dir.join(format!("{}.log", inp.job.id))),
                seconds: 0.0,
                error: Some(format!("{e:#}").replace('\n', " ")),
            },
        });
    }
    let reports: Vec<JobReport> = reports.into_iter().flatten().collect();
    let failed = reports.iter().filter(|r| !r.ok).count();
    if a.json {
        super::print_json(&reports)?;
    } else {
        print!("{}", table(&reports));
        println!(
            "{} job(s): {} built, {} cached, {failed} failed",
            reports.len(),
            reports.iter().filter(|r| r.ok && !r.cache_hit).count(),
            reports.iter().filter(|r| r.cache_hit).count()
        );
    }
    for r in reports.iter().filter(|r| !r.ok) {
        if let Some(e) = &r.error {
            eprintln!("khotfix: error: {e}");
        }
    }
    Ok(if failed == 0 { exit::OK } else { exit::FAILED })
}

fn table(reports: &[JobReport]) -> String {
    let headers = ["JOB", "KERNEL", "BACKEND", "RESULT", "TIME", "MODULE / LOG"];
    let rows: Vec<[String; 6]> = reports
        .iter()
        .map(|r| {
            let result = match (r.ok, r.cache_hit) {
                (true, true) => "cached",
                (true, false) => "built",
                _ => "FAILED",
            };
            let where_ = if r.ok {
                r.module.as_ref()
            } else {
                r.log.as_ref()
            };
            [
                r.job.clone(),
                r.kernel.clone(),
                r.backend.to_string(),
                result.into(),
                format!("{:.1}s", r.seconds),
                where_
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    khotfix::util::table::render(&headers, &rows)
}

pub fn builder(c: BuilderCmd) -> anyhow::Result<i32> {
    match c {
        BuilderCmd::Build {
            name,
            base,
            force,
            kpatch_source,
            json,
        } => {
            let config = Config::load()?;
            let engine = Engine::from_config(&config)?;
            let log_dir = config.cache_dir.join("logs");
            let opts = builder::BuildImageOptions {
                base,
                force,
                ..config.image_options(log_dir, kpatch_source)
            };
            let mp = MultiProgress::new();
            let spinner = (std::io::stderr().is_terminal() && !json)
                .then(|| Spinner::new(&mp, format!("builder {name}")));
            let img = match &spinner {
                Some(s) => builder::ensure(&engine, &name, &opts, s),
                None => builder::ensure(&engine, &name, &opts, &khotfix::progress::Quiet),
            };
            if let Some(s) = spinner {
                s.clear();
            }
            let img = img?;
            if json {
                super::print_json(&img)?;
            } else {
                println!(
                    "{} {} ({})",
                    if img.reused { "reused" } else { "built" },
                    img.tag,
                    img.id
                );
            }
            Ok(exit::OK)
        }
    }
}
