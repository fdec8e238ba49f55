//! `khotfix run`, and `plan --format k8s`.
use anyhow::{Context, Result};
use clap::Args;
use khotfix::plan::{read_kernel_list, Plan};
use khotfix::run::{self, BadInput, ProgressMode, RunSettings, Selection};
use std::path::PathBuf;

#[derive(Args)]
pub struct RunArgs {
    /// Recipes (default: recipes/*.toml).
    pub recipes: Vec<PathBuf>,
    /// Output directory: jobs/<job-id>/ (state and stage outputs),
    /// verified/<job-id>/ (RPMs that passed verify), repo/ (published).
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// Jobs to run at the same time.
    #[arg(short = 'j', long = "jobs", default_value_t = 2)]
    pub parallel: usize,
    /// Run only job N of the plan (CI matrix / Kubernetes Indexed Job) and
    /// skip publish (run `khotfix publish` over OUT/verified afterwards).
    #[arg(long)]
    pub job_index: Option<usize>,
    /// Refuse to run unless the plan's digest is this (see `--json` output).
    #[arg(long, value_name = "DIGEST")]
    pub expect_plan: Option<String>,
    /// With --job-index: refuse to run unless that job has this id.
    #[arg(long, value_name = "JOB_ID", requires = "job_index")]
    pub expect_job: Option<String>,
    /// Only the jobs of these recipe targets (repeatable).
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
    /// Kernel releases to resolve ranges against, one per line.
    #[arg(long)]
    pub kernels: Option<PathBuf>,
    /// Resolve ranges against what the distros' repositories publish.
    #[arg(long)]
    pub from_repos: bool,
    /// Signing keys directory as made by `khotfix keys generate` (default:
    /// development keys generated in OUT/keys).
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// Repository to publish to (default OUT/repo).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Write a Markdown report here (e.g. "$GITHUB_STEP_SUMMARY").
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Print the run report as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Load recipes and expand the plan the same way `khotfix plan` does.
fn load_plan(a: &RunArgs) -> Result<(Vec<khotfix::recipe::Recipe>, Plan)> {
    let mut recipes = khotfix::recipe::Recipe::load_all(&a.recipes)?;
    if !a.targets.is_empty() {
        for t in &a.targets {
            if !recipes
                .iter()
                .any(|r| r.targets.iter().any(|x| &x.name == t))
            {
                anyhow::bail!("--target {t:?}: no recipe has a target of that name");
            }
        }
        // Drop the other targets before resolving kernels, so --from-repos
        // only asks the selected targets' distros.
        for r in &mut recipes {
            r.targets.retain(|x| a.targets.contains(&x.name));
        }
        recipes.retain(|r| !r.targets.is_empty());
    }
    let mut known = match &a.kernels {
        Some(f) => read_kernel_list(f)?,
        None => Vec::new(),
    };
    if a.from_repos {
        known.extend(khotfix::fetch::published_kernels_of(&recipes)?);
    }
    let plan = Plan::expand(&recipes, &known)?;
    Ok((recipes, plan))
}

/// `--keys DIR`, or development keys generated once in `OUT/keys`.
fn keys_dir(a: &RunArgs) -> Result<PathBuf> {
    if let Some(k) = &a.keys {
        if !k.is_dir() {
            anyhow::bail!("--keys {}: no such directory", k.display());
        }
        return Ok(k.clone());
    }
    let dir = a.out.join("keys");
    if !dir.join(khotfix::keys::PGP_SECRET_FILE).is_file() {
        eprintln!(
            "khotfix: generating development signing keys in {} (use --keys DIR for real ones)",
            dir.display()
        );
        khotfix::keys::generate(&dir, &khotfix::keys::GenerateOptions::default())?;
    }
    Ok(dir)
}

/// Exit codes: 0 all jobs (and publish) passed, 1 a job or publish failed,
/// 2 bad input (returned as `Err`; main maps it).
pub fn run(a: RunArgs) -> Result<i32> {
    if a.parallel == 0 {
        anyhow::bail!("-j 0: run at least one job at a time");
    }
    let (recipes, plan) = load_plan(&a)?;
    let mut settings = RunSettings::new(&a.out);
    settings.parallel = a.parallel;
    settings.publish = a.job_index.is_none();
    if let Some(r) = &a.repo {
        settings.repo =
            std::path::absolute(r).with_context(|| format!("--repo {}", r.display()))?;
    }
    settings.reporter = khotfix::progress::SharedReporter::new(super::progress::RunDisplay::new(
        ProgressMode::detect(),
    ));
    let sel = Selection {
        index: a.job_index,
        expect_plan: a.expect_plan.clone(),
        expect_job: a.expect_job.clone(),
    };
    if plan.jobs.is_empty() {
        eprintln!("khotfix: the plan has no jobs (no kernel matched; use --kernels FILE or --from-repos to resolve ranges)");
    }
    if !plan.jobs.is_empty() {
        let k = keys_dir(&a)?;
        settings.keys =
            Some(std::path::absolute(&k).with_context(|| format!("--keys {}", k.display()))?);
    }
    let pipeline = run::wire::default_pipeline();
    let report = match run::run(&pipeline, &recipes, &plan, &sel, &settings) {
        Ok(r) => r,
        Err(e) if e.downcast_ref::<BadInput>().is_some() => return Err(e),
        Err(e) => return Err(e.context("khotfix run")),
    };
    if let Some(path) = &a.report {
        khotfix::util::fsx::write_atomic(path, report.to_markdown().as_bytes())
            .with_context(|| format!("writing the report {}", path.display()))?;
    }
    if a.json {
        crate::cli::print_json(&report)?;
    } else {
        print!("{}", report.to_table());
    }
    Ok(report.exit_code())
}
