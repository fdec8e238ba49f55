//! The orchestrator behind `khotfix run`: plan → fetch → prepare → build →
//! sign → package → verify over every job of the plan, then publish once for
//! the jobs that passed verify.
//!
//! Why it is built this way:
//! - Each stage plugs in through the [`Stage`] trait (a closure works), keyed
//!   by [`StageKind`] in a [`Pipeline`]. Each stage returns its typed output
//!   ([`artifacts::StageData`]); later stages read them from
//!   [`JobContext::artifacts`]. The orchestrator only needs the files behind
//!   an output (to digest them), never their meaning.
//! - Every job has a state file, `OUT/jobs/<job-id>/state.json`, written
//!   atomically after each finished stage with the stage's input digests and
//!   output paths/digests ([`state`]). A re-run skips every stage whose inputs
//!   and outputs are unchanged, so a finished job costs a few file stats, and
//!   a job whose recipe or patches changed restarts from the first stage that
//!   reads them.
//! - Jobs run on `-j N` worker threads; one failing (or panicking) job never
//!   stops the others. Publish runs once at the end over the RPMs of the jobs
//!   that passed verify, which are also copied to `OUT/verified/<job-id>/` so
//!   CI and Kubernetes publish steps can pick exactly those.

pub mod artifacts;
pub mod k8s;
pub mod progress;
pub mod report;
pub mod stages;
pub mod state;
pub mod wire;

use crate::distro::Distro;
use crate::plan::{Job, Plan};
use crate::recipe::{Recipe, Target};
use crate::util::{fsx, validate};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

pub use crate::progress::ProgressMode;
pub use artifacts::{JobArtifacts, StageData};
pub use report::{
    JobResult, JobStatus, PublishResult, PublishStatus, RunReport, StageResult, StageStatus,
};
pub use state::{ArtifactRecord, JobState, StageRecord};

/// The per-job stages, in pipeline order. (Plan runs before them, publish
/// once after all of them.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    Fetch,
    Prepare,
    Build,
    Sign,
    Package,
    Verify,
}

impl StageKind {
    /// All per-job stages in the order they run.
    pub const ALL: [StageKind; 6] = [
        StageKind::Fetch,
        StageKind::Prepare,
        StageKind::Build,
        StageKind::Sign,
        StageKind::Package,
        StageKind::Verify,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StageKind::Fetch => "fetch",
            StageKind::Prepare => "prepare",
            StageKind::Build => "build",
            StageKind::Sign => "sign",
            StageKind::Package => "package",
            StageKind::Verify => "verify",
        }
    }

    /// Does this stage read the recipe and its patches/module source? Fetch
    /// depends only on the kernel, so editing a patch does not re-download.
    pub fn uses_sources(self) -> bool {
        self != StageKind::Fetch
    }
}

impl fmt::Display for StageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a stage produced: its typed output (whose files must exist when the
/// stage returns), a short summary for the report, and JSON detail that only
/// the report reads (the verify stage puts its `VerifyReport` here).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StageOutput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<StageData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
    /// Set when the stage ran to completion but its verdict is "no" (e.g. a
    /// verify check failed): the job fails with this reason, the detail is
    /// kept for the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

impl StageOutput {
    pub fn new() -> Self {
        Self::default()
    }
    /// The stage's typed output.
    pub fn of(data: StageData) -> Self {
        StageOutput {
            data: Some(data),
            ..Self::default()
        }
    }
    pub fn summary(mut self, s: impl Into<String>) -> Self {
        self.summary = Some(s.into());
        self
    }
    pub fn detail(mut self, v: serde_json::Value) -> Self {
        self.detail = v;
        self
    }
    /// Mark the stage's verdict as failed (see [`StageOutput::failure`]).
    pub fn failed(mut self, reason: impl Into<String>) -> Self {
        self.failure = Some(reason.into());
        self
    }
}

/// Settings shared by all jobs of one run.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Output directory (`OUT`): `jobs/`, `verified/`, `repo/`, `publish.json`.
    pub out: PathBuf,
    /// Jobs run at the same time (`-j`).
    pub parallel: usize,
    /// Signing keys directory (`--keys`), handed to stages and the publisher.
    pub keys: Option<PathBuf>,
    /// Run publish at the end (false with `--job-index`).
    pub publish: bool,
    /// Repository directory publish writes (default `OUT/repo`).
    pub repo: PathBuf,
    /// Where progress goes (default: nowhere).
    pub reporter: crate::progress::SharedReporter,
}

impl RunSettings {
    /// `out` is made absolute: stages hand each other absolute paths.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        let out = out.into();
        let out = std::path::absolute(&out).unwrap_or(out);
        RunSettings {
            repo: out.join("repo"),
            out,
            parallel: 1,
            keys: None,
            publish: true,
            reporter: Default::default(),
        }
    }
    /// `OUT/jobs/<job-id>`.
    pub fn job_dir(&self, job_id: &str) -> PathBuf {
        self.out.join("jobs").join(job_id)
    }
    /// `OUT/verified/<job-id>`: the RPM of a job that passed verify.
    pub fn verified_dir(&self, job_id: &str) -> PathBuf {
        self.out.join("verified").join(job_id)
    }
}

/// Everything a stage may look at for one job.
pub struct JobContext<'a> {
    pub job: &'a Job,
    pub recipe: &'a Recipe,
    pub target: &'a Target,
    /// The job's distro, resolved once per job (with `$KHOTFIX_MIRRORS`).
    pub distro: &'a Distro,
    pub settings: &'a RunSettings,
    /// `OUT/jobs/<job-id>`.
    pub job_dir: PathBuf,
    /// `OUT/jobs/<job-id>/<stage>`: created before the stage runs; the stage
    /// owns it.
    pub work_dir: PathBuf,
    /// Typed outputs of the stages that already finished.
    pub artifacts: &'a JobArtifacts,
    note: &'a (dyn Fn(&str) + Sync),
}

impl JobContext<'_> {
    /// Show a short progress note for this job (e.g. "downloading kernel-devel").
    pub fn note(&self, msg: &str) {
        (self.note)(msg)
    }
}

/// One per-job stage. Closures `Fn(&JobContext) -> Result<StageOutput>`
/// implement it, so a real stage plugs in with one call:
/// `pipeline.stage(StageKind::Build, |cx: &JobContext| build_for(cx))`.
pub trait Stage: Send + Sync {
    /// Do the work. Errors fail the job at this stage (its message goes to
    /// the report); artifacts must exist when this returns.
    fn run(&self, cx: &JobContext) -> Result<StageOutput>;
    /// Inputs that are not files of earlier stages (signing-key fingerprint,
    /// builder image id, tool versions): a change re-runs this stage.
    fn extra_inputs(&self, _cx: &JobContext) -> Result<BTreeMap<String, String>> {
        Ok(BTreeMap::new())
    }
}

impl<F> Stage for F
where
    F: Fn(&JobContext) -> Result<StageOutput> + Send + Sync,
{
    fn run(&self, cx: &JobContext) -> Result<StageOutput> {
        self(cx)
    }
}

/// What publish produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PublishOutput {
    /// The repository directory.
    pub repo: PathBuf,
    /// The `.repo` file line(s) a host would use (`baseurl=...`), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_repo: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// The publish step: runs once per run over the verified RPMs.
pub trait Publisher: Send + Sync {
    fn publish(&self, rpms: &[PathBuf], settings: &RunSettings) -> Result<PublishOutput>;
}

impl<F> Publisher for F
where
    F: Fn(&[PathBuf], &RunSettings) -> Result<PublishOutput> + Send + Sync,
{
    fn publish(&self, rpms: &[PathBuf], settings: &RunSettings) -> Result<PublishOutput> {
        self(rpms, settings)
    }
}

/// The stage table.
#[derive(Default)]
pub struct Pipeline {
    stages: BTreeMap<StageKind, Box<dyn Stage>>,
    publisher: Option<Box<dyn Publisher>>,
}

impl Pipeline {
    pub fn new() -> Self {
        Self::default()
    }
    /// Plug in (or replace) the implementation of one stage.
    pub fn stage(mut self, kind: StageKind, s: impl Stage + 'static) -> Self {
        self.stages.insert(kind, Box::new(s));
        self
    }
    /// Plug in the publish step.
    pub fn publisher(mut self, p: impl Publisher + 'static) -> Self {
        self.publisher = Some(Box::new(p));
        self
    }
    /// Stages without an implementation in this build.
    pub fn missing(&self) -> Vec<StageKind> {
        StageKind::ALL
            .into_iter()
            .filter(|k| !self.stages.contains_key(k))
            .collect()
    }
}

/// Which jobs of the plan to run.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only this plan index (`--job-index`).
    pub index: Option<usize>,
    /// Refuse to run when the plan's digest differs (`--expect-plan`):
    /// guards an index against a plan that changed since it was handed out.
    pub expect_plan: Option<String>,
    /// Refuse to run when the selected job's id differs (`--expect-job`).
    pub expect_job: Option<String>,
}

/// Bad input to `run` (exit code 2), as opposed to a job failing (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// A short digest of the plan's job ids: the same recipes and kernels give
/// the same digest, so an index handed to a CI or Kubernetes worker means
/// the same job there.
pub fn plan_digest(plan: &Plan) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for j in &plan.jobs {
        h.update(j.id.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())[..16].to_string()
}

/// Run the pipeline over the selected jobs of `plan`, then publish (when
/// `settings.publish`). Returns the report; `Err` only for bad input or when
/// the output directory is unusable.
pub fn run(
    pipeline: &Pipeline,
    recipes: &[Recipe],
    plan: &Plan,
    sel: &Selection,
    settings: &RunSettings,
) -> Result<RunReport> {
    let started = Instant::now();
    if let Some(want) = &sel.expect_plan {
        let have = plan_digest(plan);
        if &have != want {
            return Err(BadInput(format!(
                "the plan changed since it was handed out (digest {have}, expected {want}): a kernel was added or removed; regenerate the matrix"
            ))
            .into());
        }
    }
    let selected: Vec<(usize, &Job)> = match sel.index {
        Some(i) => match plan.jobs.get(i) {
            Some(j) => vec![(i, j)],
            None => {
                return Err(BadInput(format!(
                    "--job-index {i} is out of range: the plan has {} job(s)",
                    plan.jobs.len()
                ))
                .into())
            }
        },
        None => plan.jobs.iter().enumerate().collect(),
    };
    if let (Some(want), [(_, j)]) = (&sel.expect_job, selected.as_slice()) {
        if &j.id != want {
            return Err(BadInput(format!("job index {} is {} but {want} was expected: the plan changed; regenerate the matrix", selected[0].0, j.id)).into());
        }
    }
    // Resolve each job's recipe and target up front: a job naming a recipe
    // we were not given is a programming error in the caller, reported as input.
    let mut work = Vec::new();
    for (i, j) in &selected {
        validate::package_token("job id", &j.id).map_err(BadInput)?;
        let recipe = recipes.iter().find(|r| r.path == j.recipe).ok_or_else(|| {
            BadInput(format!(
                "job {}: recipe {} was not loaded",
                j.id,
                j.recipe.display()
            ))
        })?;
        let target = recipe
            .targets
            .iter()
            .find(|t| t.name == j.target)
            .ok_or_else(|| {
                BadInput(format!(
                    "job {}: recipe {} has no target {:?}",
                    j.id,
                    j.recipe.display(),
                    j.target
                ))
            })?;
        let distro = crate::fetch::distro_for_run(&j.distro)
            .map_err(|e| BadInput(format!("job {}: {e:#}", j.id)))?;
        work.push(ResolvedJob {
            index: *i,
            job: j,
            recipe,
            target,
            distro,
        });
    }
    std::fs::create_dir_all(settings.out.join("jobs")).with_context(|| {
        format!(
            "creating output directory {}",
            settings.out.join("jobs").display()
        )
    })?;

    let progress = progress::Progress::new(settings.reporter.clone(), work.len());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<JobResult>>> = Mutex::new(vec![None; work.len()]);
    let workers = settings.parallel.clamp(1, work.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let Some(rj) = work.get(n) else {
                    break;
                };
                progress.job_started(&rj.job.id);
                let r = run_job(pipeline, rj, settings, &progress);
                progress.job_finished(&rj.job.id, r.status == JobStatus::Passed);
                if let Ok(mut v) = results.lock() {
                    v[n] = Some(r);
                }
            });
        }
    });
    let jobs: Vec<JobResult> = results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect();

    let publish = if settings.publish {
        progress.message("publish");
        Some(run_publish(pipeline, &jobs, settings))
    } else {
        None
    };
    progress.finish();
    Ok(RunReport::new(
        jobs,
        publish,
        plan_digest(plan),
        settings,
        started.elapsed().as_secs_f64(),
    ))
}

/// A job of the plan with its recipe, target and distro resolved (once).
pub struct ResolvedJob<'a> {
    /// Position in the plan (`--job-index`).
    pub index: usize,
    pub job: &'a Job,
    pub recipe: &'a Recipe,
    pub target: &'a Target,
    pub distro: Distro,
}

/// One job's run in progress: its result so far and its state file.
struct JobRun<'a> {
    job: &'a Job,
    job_dir: PathBuf,
    result: JobResult,
    state: JobState,
    started: Instant,
    progress: &'a progress::Progress,
}

/// A stage that ran (or tried to): what it was given and how long it took.
struct Attempt {
    kind: StageKind,
    inputs: BTreeMap<String, String>,
    seconds: f64,
}

impl JobRun<'_> {
    /// Finish the job as failed (at `stage`, if one is to blame).
    fn fail(mut self, stage: Option<StageKind>, msg: String) -> JobResult {
        self.progress.stage_failed(&self.job.id, stage, &msg);
        self.result.fail(stage, msg);
        self.result.seconds = self.started.elapsed().as_secs_f64();
        self.result
    }

    /// Record a failed stage in the job's state and the result, and finish
    /// the job.
    fn fail_stage(mut self, at: Attempt, msg: String, detail: serde_json::Value) -> JobResult {
        self.state
            .set_failure(at.kind, &msg, at.inputs, detail.clone());
        let save = self.state.save(&self.job_dir);
        let mut sr = StageResult::failed(at.kind, at.seconds, &msg);
        sr.detail = detail;
        self.result.stages.push(sr);
        let msg = match save {
            Ok(()) => msg,
            Err(se) => format!("{msg} (and saving the job state failed: {se:#})"),
        };
        self.fail(Some(at.kind), msg)
    }
}

/// Run one job through the stages, resuming from its state file.
fn run_job(
    pipeline: &Pipeline,
    rj: &ResolvedJob,
    settings: &RunSettings,
    progress: &progress::Progress,
) -> JobResult {
    let job = rj.job;
    let mut result = JobResult::new(rj.index, job);
    result.publish = rj.target.publish;
    let job_dir = settings.job_dir(&job.id);
    let mut run = JobRun {
        job,
        job_dir: job_dir.clone(),
        result,
        state: JobState::fresh(job),
        started: Instant::now(),
        progress,
    };
    // One run per job at a time: two pods (or two terminals) on the same
    // output would otherwise interleave state writes.
    let _lock = match state::lock_job(&job_dir) {
        Ok(l) => l,
        Err(e) => return run.fail(None, format!("{e:#}")),
    };
    // Any earlier "verified" copy is stale until this run passes verify again.
    let verified = settings.verified_dir(&job.id);
    if let Err(e) = remove_dir_if_exists(&verified) {
        return run.fail(None, format!("{e:#}"));
    }
    let (st, note) = state::load(&job_dir, job);
    run.state = st;
    if let Some(n) = note {
        progress.note(&job.id, &n);
    }
    let sources = match state::source_digests(job, rj.recipe, rj.target) {
        Ok(d) => d,
        Err(e) => return run.fail(None, format!("{e:#}")),
    };
    let mut artifacts = JobArtifacts::default();
    // `<stage>.<file>` → digest of every finished stage's outputs.
    let mut chain: BTreeMap<String, String> = BTreeMap::new();
    for kind in StageKind::ALL {
        let Some(stage) = pipeline.stages.get(&kind) else {
            let msg = format!("stage {kind} is not available in this build of khotfix");
            return run.fail(Some(kind), msg);
        };
        let job_id = job.id.clone();
        let note_fn = move |m: &str| progress.stage_note(&job_id, kind, m);
        let cx = JobContext {
            job,
            recipe: rj.recipe,
            target: rj.target,
            distro: &rj.distro,
            settings,
            job_dir: job_dir.clone(),
            work_dir: job_dir.join(kind.name()),
            artifacts: &artifacts,
            note: &note_fn,
        };
        let inputs = match stage_inputs(stage.as_ref(), &cx, kind, &sources, &chain) {
            Ok(i) => i,
            Err(e) => return run.fail(Some(kind), format!("{e:#}")),
        };
        // Reuse a finished stage whose inputs (including the digests of every
        // earlier output) are unchanged. A stage that re-ran but produced the
        // same bytes therefore does not force the later ones to run again.
        if let Some(rec) = run.state.finished(kind, &inputs) {
            progress.stage_cached(&job.id, kind);
            run.result.stages.push(StageResult::from_record(rec));
            chain.extend(rec.chain_digests());
            if let Some(d) = rec.data.clone() {
                artifacts.put(d);
            }
            continue;
        }
        progress.stage_started(&job.id, kind);
        let t0 = Instant::now();
        let outcome = std::fs::create_dir_all(&cx.work_dir)
            .with_context(|| format!("creating {}", cx.work_dir.display()))
            .and_then(|_| call_stage(stage.as_ref(), &cx));
        drop(cx);
        let at = Attempt {
            kind,
            inputs,
            seconds: t0.elapsed().as_secs_f64(),
        };
        let out = match outcome {
            Ok(out) => out,
            Err(e) => return run.fail_stage(at, format!("{e:#}"), serde_json::Value::Null),
        };
        if let Some(reason) = out.failure.clone() {
            // The stage finished but said no: keep its detail, fail the job.
            return run.fail_stage(at, reason, out.detail);
        }
        let rec = match state::record(kind, at.inputs.clone(), &out, at.seconds) {
            Ok(r) => r,
            Err(e) => return run.fail_stage(at, format!("{e:#}"), out.detail),
        };
        run.state.failure = None;
        run.state.put(rec.clone());
        if let Err(e) = run.state.save(&job_dir) {
            return run.fail(Some(kind), format!("{e:#}"));
        }
        progress.stage_done(&job.id, kind, at.seconds);
        chain.extend(rec.chain_digests());
        let mut sr = StageResult::from_record(&rec);
        sr.status = StageStatus::Done;
        run.result.stages.push(sr);
        if let Some(d) = out.data {
            artifacts.put(d);
        }
    }
    // Passed: expose the RPM for publishing.
    let rpm = match artifacts.packaged() {
        Ok(p) => p.rpm.clone(),
        Err(e) => return run.fail(Some(StageKind::Package), format!("job {}: {e}", job.id)),
    };
    match copy_verified(&rpm, &verified) {
        Ok(p) => run.result.rpm = Some(p),
        Err(e) => return run.fail(Some(StageKind::Verify), format!("{e:#}")),
    }
    run.result.status = JobStatus::Passed;
    run.result.seconds = run.started.elapsed().as_secs_f64();
    run.result
}

/// Call a stage, turning a panic into an error so one job cannot take the
/// run down.
fn call_stage(stage: &dyn Stage, cx: &JobContext) -> Result<StageOutput> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stage.run(cx))) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            bail!(
                "stage {} panicked: {msg}",
                cx.work_dir
                    .file_name()
                    .map(|f| f.to_string_lossy())
                    .unwrap_or_default()
            )
        }
    }
}

/// Input digests of one stage: the job's identity, its sources (from prepare
/// on), every earlier stage's artifact digests, and the stage's own extras.
fn stage_inputs(
    stage: &dyn Stage,
    cx: &JobContext,
    kind: StageKind,
    sources: &BTreeMap<String, String>,
    chain: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let mut inputs = BTreeMap::new();
    for (k, v) in sources {
        if kind.uses_sources() || k == "job" {
            inputs.insert(k.clone(), v.clone());
        }
    }
    inputs.extend(chain.iter().map(|(k, v)| (k.clone(), v.clone())));
    for (k, v) in stage.extra_inputs(cx)? {
        inputs.insert(format!("extra.{k}"), v);
    }
    Ok(inputs)
}

fn remove_dir_if_exists(p: &Path) -> Result<()> {
    match std::fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", p.display())),
    }
}

/// Copy (hard-link when possible) the RPM into `OUT/verified/<job-id>/`.
fn copy_verified(rpm: &Path, dir: &Path) -> Result<PathBuf> {
    let name = rpm
        .file_name()
        .with_context(|| format!("RPM path {} has no file name", rpm.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dest = dir.join(name);
    let tmp = dir.join(format!(".khotfix-tmp-{}", name.to_string_lossy()));
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(rpm, &tmp).is_err() {
        std::fs::copy(rpm, &tmp)
            .with_context(|| format!("copying {} to {}", rpm.display(), tmp.display()))?;
    }
    std::fs::rename(&tmp, &dest).with_context(|| format!("renaming into {}", dest.display()))?;
    fsx::sync_dir(dir)?;
    Ok(dest)
}

/// Publish the verified RPMs once; skipped when the same set was already
/// published to the same repository.
fn run_publish(pipeline: &Pipeline, jobs: &[JobResult], settings: &RunSettings) -> PublishResult {
    let rpms: Vec<PathBuf> = jobs
        .iter()
        .filter(|j| j.status == JobStatus::Passed && j.publish)
        .filter_map(|j| j.rpm.clone())
        .collect();
    if rpms.is_empty() {
        let verify_only = jobs
            .iter()
            .any(|j| j.status == JobStatus::Passed && !j.publish);
        return PublishResult::skipped(if verify_only {
            "no publishing job passed verify (verify-only targets are not published)"
        } else {
            "no job passed verify"
        });
    }
    let Some(p) = &pipeline.publisher else {
        return PublishResult::failed(
            &settings.repo,
            rpms.len(),
            "publish is not available in this build of khotfix".into(),
        );
    };
    let t0 = Instant::now();
    let inputs = match state::publish_inputs(&rpms, settings) {
        Ok(i) => i,
        Err(e) => return PublishResult::failed(&settings.repo, rpms.len(), format!("{e:#}")),
    };
    if let Some(prev) = state::load_publish(&settings.out, &inputs) {
        return PublishResult::cached(prev, rpms.len());
    }
    let out =
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.publish(&rpms, settings)))
        {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                return PublishResult::failed(&settings.repo, rpms.len(), format!("{e:#}"))
            }
            Err(_) => {
                return PublishResult::failed(&settings.repo, rpms.len(), "publish panicked".into())
            }
        };
    if let Err(e) = state::save_publish(&settings.out, &inputs, &out) {
        return PublishResult::failed(&settings.repo, rpms.len(), format!("{e:#}"));
    }
    PublishResult::done(out, rpms.len(), t0.elapsed().as_secs_f64())
}
