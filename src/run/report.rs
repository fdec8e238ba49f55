//! What a run did: per job, per stage, and publish; printed as a summary
//! table (terminal), Markdown (`--report FILE`, e.g. `$GITHUB_STEP_SUMMARY`)
//! or JSON (`--json`).
//!
//! Summary table columns: `JOB KERNEL RESULT STAGE TIME DETAIL`, where STAGE
//! is the stage a failed job stopped at (or `verify` for a passed one), TIME
//! the job's wall time in this run, and DETAIL the failure's first line or
//! the RPM file name. Stages reused from an earlier run count as passed.
//!
//! Markdown: a heading, a one-line count, a table with one row per job and
//! one column per stage (`✅` ran, `♻️` up to date, `❌` failed, `·` not
//! reached), the publish result, and a "Failures" section with each failed
//! job's full error in a fenced block plus its verify checks.

use super::state::StageRecord;
use super::{PublishOutput, RunSettings, StageKind};
use crate::plan::Job;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageStatus {
    /// Ran in this run and finished.
    Done,
    /// Reused from an earlier run (inputs and outputs unchanged).
    Cached,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageResult {
    pub stage: StageKind,
    pub status: StageStatus,
    /// Time the stage took when it ran (for cached stages: when it last ran).
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

impl StageResult {
    /// A stage reused from its record.
    pub fn from_record(rec: &StageRecord) -> StageResult {
        StageResult {
            stage: rec.stage,
            status: StageStatus::Cached,
            seconds: rec.seconds,
            summary: rec.summary.clone(),
            error: None,
            detail: rec.detail.clone(),
        }
    }
    pub fn failed(stage: StageKind, seconds: f64, error: &str) -> StageResult {
        StageResult {
            stage,
            status: StageStatus::Failed,
            seconds,
            summary: None,
            error: Some(error.to_string()),
            detail: serde_json::Value::Null,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Passed,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// Index in the plan (what `--job-index` takes).
    pub index: usize,
    pub id: String,
    pub kernel: String,
    pub package: String,
    pub status: JobStatus,
    pub stages: Vec<StageResult>,
    /// The stage the job failed at (`None` with an error: before any stage,
    /// e.g. the job directory is locked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_stage: Option<StageKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The verified RPM under `OUT/verified/<job-id>/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<PathBuf>,
    /// Whether a passed job's RPM goes to the repository (its target's
    /// `publish`; a verify-only target builds and checks but never ships).
    #[serde(default = "yes")]
    pub publish: bool,
    pub seconds: f64,
}

fn yes() -> bool {
    true
}

impl JobResult {
    pub fn new(index: usize, job: &Job) -> JobResult {
        JobResult {
            index,
            id: job.id.clone(),
            kernel: job.kernel.to_string(),
            package: job.package.clone(),
            status: JobStatus::Failed,
            stages: Vec::new(),
            failed_stage: None,
            error: None,
            rpm: None,
            publish: true,
            seconds: 0.0,
        }
    }
    pub(crate) fn fail(&mut self, stage: Option<StageKind>, error: String) {
        self.status = JobStatus::Failed;
        self.failed_stage = stage;
        self.error = Some(error);
        self.rpm = None;
    }
    /// Were all stages reused (nothing ran)?
    pub fn up_to_date(&self) -> bool {
        self.status == JobStatus::Passed
            && self.stages.iter().all(|s| s.status == StageStatus::Cached)
    }
    fn stage(&self, k: StageKind) -> Option<&StageResult> {
        self.stages.iter().find(|s| s.stage == k)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishStatus {
    Done,
    Cached,
    Skipped,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishResult {
    pub status: PublishStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_repo: Option<String>,
    pub packages: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub seconds: f64,
}

impl PublishResult {
    pub fn skipped(reason: &str) -> Self {
        PublishResult {
            status: PublishStatus::Skipped,
            repo: None,
            client_repo: None,
            packages: 0,
            reason: Some(reason.into()),
            seconds: 0.0,
        }
    }
    pub fn failed(repo: &Path, packages: usize, reason: String) -> Self {
        PublishResult {
            status: PublishStatus::Failed,
            repo: Some(repo.to_path_buf()),
            client_repo: None,
            packages,
            reason: Some(reason),
            seconds: 0.0,
        }
    }
    pub fn cached(o: PublishOutput, packages: usize) -> Self {
        PublishResult {
            status: PublishStatus::Cached,
            repo: Some(o.repo),
            client_repo: o.client_repo,
            packages,
            reason: None,
            seconds: 0.0,
        }
    }
    pub fn done(o: PublishOutput, packages: usize, seconds: f64) -> Self {
        PublishResult {
            status: PublishStatus::Done,
            repo: Some(o.repo),
            client_repo: o.client_repo,
            packages,
            reason: None,
            seconds,
        }
    }
    pub fn ok(&self) -> bool {
        matches!(self.status, PublishStatus::Done | PublishStatus::Cached)
    }
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub out: PathBuf,
    /// See [`super::plan_digest`].
    pub plan_digest: String,
    pub passed: usize,
    pub failed: usize,
    pub jobs: Vec<JobResult>,
    /// `None` when publish was not part of this run (`--job-index`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<PublishResult>,
    pub seconds: f64,
}

impl RunReport {
    pub(crate) fn new(
        jobs: Vec<JobResult>,
        publish: Option<PublishResult>,
        plan_digest: String,
        settings: &RunSettings,
        seconds: f64,
    ) -> Self {
        let passed = jobs
            .iter()
            .filter(|j| j.status == JobStatus::Passed)
            .count();
        RunReport {
            out: settings.out.clone(),
            plan_digest,
            passed,
            failed: jobs.len() - passed,
            jobs,
            publish,
            seconds,
        }
    }

    /// Did everything pass (every job, and publish when it was part of the run
    /// and had something to publish)?
    pub fn success(&self) -> bool {
        self.failed == 0
            && self
                .publish
                .as_ref()
                .map_or(true, |p| p.status != PublishStatus::Failed)
    }

    /// The process exit code: 0 all passed, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.success() {
            crate::util::exit::OK
        } else {
            crate::util::exit::FAILED
        }
    }

    /// The summary table printed at the end of a run.
    pub fn to_table(&self) -> String {
        let headers = ["JOB", "KERNEL", "RESULT", "STAGE", "TIME", "DETAIL"];
        let rows: Vec<[String; 6]> = self
            .jobs
            .iter()
            .map(|j| {
                let (result, stage, detail) = match j.status {
                    JobStatus::Passed => (
                        if j.up_to_date() {
                            "up-to-date"
                        } else {
                            "passed"
                        }
                        .to_string(),
                        "verify".to_string(),
                        j.rpm
                            .as_ref()
                            .and_then(|p| p.file_name())
                            .map(|f| f.to_string_lossy().to_string())
                            .unwrap_or_default(),
                    ),
                    JobStatus::Failed => (
                        "FAILED".to_string(),
                        j.failed_stage
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "-".into()),
                        first_line(j.error.as_deref().unwrap_or(""), 100),
                    ),
                };
                [
                    j.id.clone(),
                    j.kernel.clone(),
                    result,
                    stage,
                    format!("{:.1}s", j.seconds),
                    detail,
                ]
            })
            .collect();
        let mut out = crate::util::table::render(&headers, &rows);
        out.push_str(&format!(
            "{} passed, {} failed in {:.1}s",
            self.passed, self.failed, self.seconds
        ));
        match &self.publish {
            Some(p) if p.ok() => {
                let repo = p
                    .repo
                    .as_ref()
                    .map(|r| r.display().to_string())
                    .unwrap_or_default();
                let how = if p.status == PublishStatus::Cached {
                    "already published in"
                } else {
                    "published to"
                };
                out.push_str(&format!("; {} package(s) {how} {repo}\n", p.packages));
                if let Some(c) = &p.client_repo {
                    out.push_str(&format!("client .repo: {c}\n"));
                }
            }
            Some(p) => out.push_str(&format!(
                "; publish {}: {}\n",
                status_word(p.status),
                p.reason.as_deref().unwrap_or("")
            )),
            None => out.push_str("; publish not part of this run\n"),
        }
        out
    }

    /// Markdown for CI job summaries.
    pub fn to_markdown(&self) -> String {
        let mut md = String::from("## khotfix run\n\n");
        let icon = if self.success() { "✅" } else { "❌" };
        md.push_str(&format!(
            "{icon} **{} passed, {} failed** of {} job(s) in {:.1}s (plan `{}`)\n\n",
            self.passed,
            self.failed,
            self.jobs.len(),
            self.seconds,
            self.plan_digest
        ));
        if !self.jobs.is_empty() {
            md.push_str("| Job | Kernel | Result |");
            for k in StageKind::ALL {
                md.push_str(&format!(" {k} |"));
            }
            md.push_str(" Time | Package |\n|---|---|---|");
            for _ in StageKind::ALL {
                md.push_str(":-:|");
            }
            md.push_str("--:|---|\n");
            for j in &self.jobs {
                let result = match j.status {
                    JobStatus::Passed if j.up_to_date() => "♻️ up to date",
                    JobStatus::Passed => "✅ passed",
                    JobStatus::Failed => "❌ failed",
                };
                md.push_str(&format!(
                    "| `{}` | `{}` | {result} |",
                    md_cell(&j.id),
                    md_cell(&j.kernel)
                ));
                for k in StageKind::ALL {
                    let c = match j.stage(k).map(|s| s.status) {
                        Some(StageStatus::Done) => "✅",
                        Some(StageStatus::Cached) => "♻️",
                        Some(StageStatus::Failed) => "❌",
                        None => "·",
                    };
                    md.push_str(&format!(" {c} |"));
                }
                let pkg = j
                    .rpm
                    .as_ref()
                    .and_then(|p| p.file_name())
                    .map(|f| format!("`{}`", md_cell(&f.to_string_lossy())))
                    .unwrap_or_default();
                md.push_str(&format!(" {:.1}s | {pkg} |\n", j.seconds));
            }
            md.push('\n');
        }
        match &self.publish {
            Some(p) => {
                let repo = p.repo.as_ref().map(|r| format!(" `{}`", md_cell(&r.display().to_string()))).unwrap_or_default();
                md.push_str(&format!("**Publish:** {} — {} package(s){repo}", status_word(p.status), p.packages));
                if let Some(r) = &p.reason {
                    md.push_str(&format!(": {}", md_cell(&first_line(r, 300))));
                }
                md.push('\n');
                if let Some(c) = &p.client_repo {
                    md.push_str(&format!("\n```ini\n{}\n```\n", fence_safe(c)));
                }
            }
            None => md.push_str("**Publish:** not part of this run (`--job-index`); run `khotfix publish` over `verified/`.\n"),
        }
        let failed: Vec<&JobResult> = self
            .jobs
            .iter()
            .filter(|j| j.status == JobStatus::Failed)
            .collect();
        if !failed.is_empty() {
            md.push_str("\n### Failures\n");
            for j in failed {
                let stage = j
                    .failed_stage
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "setup".into());
                md.push_str(&format!(
                    "\n#### `{}` — {stage}\n\n```text\n{}\n```\n",
                    md_cell(&j.id),
                    fence_safe(j.error.as_deref().unwrap_or(""))
                ));
                if let Some(checks) = j
                    .stage(StageKind::Verify)
                    .and_then(|s| s.detail.get("checks"))
                    .and_then(|c| c.as_array())
                {
                    md.push_str(&verify_checks_md(checks));
                }
            }
        }
        let verified: Vec<&JobResult> = self
            .jobs
            .iter()
            .filter(|j| {
                j.status == JobStatus::Passed
                    && j.stage(StageKind::Verify)
                        .is_some_and(|s| s.detail.get("checks").is_some())
            })
            .collect();
        if !verified.is_empty() {
            md.push_str("\n<details><summary>Verify checks of passed jobs</summary>\n");
            for j in verified {
                md.push_str(&format!("\n#### `{}`\n", md_cell(&j.id)));
                if let Some(checks) = j
                    .stage(StageKind::Verify)
                    .and_then(|s| s.detail.get("checks"))
                    .and_then(|c| c.as_array())
                {
                    md.push_str(&verify_checks_md(checks));
                }
            }
            md.push_str("\n</details>\n");
        }
        md
    }
}

/// A check list from a `VerifyReport` as JSON (`name`, `outcome`, `message`).
fn verify_checks_md(checks: &[serde_json::Value]) -> String {
    let mut md = String::from("\n| Check | Result | Detail |\n|---|---|---|\n");
    for c in checks {
        let name = c.get("name").and_then(|v| v.as_str()).unwrap_or("?");
        let outcome = c.get("outcome").and_then(|v| v.as_str()).unwrap_or("?");
        let icon = match outcome {
            "pass" => "✅ pass",
            "fail" => "❌ fail",
            "skip" => "⏭️ skip",
            _ => outcome,
        };
        let msg = c.get("message").and_then(|v| v.as_str()).unwrap_or("");
        md.push_str(&format!(
            "| {} | {icon} | {} |\n",
            md_cell(name),
            md_cell(&first_line(msg, 200))
        ));
    }
    md
}

fn status_word(s: PublishStatus) -> &'static str {
    match s {
        PublishStatus::Done => "published",
        PublishStatus::Cached => "up to date",
        PublishStatus::Skipped => "skipped",
        PublishStatus::Failed => "FAILED",
    }
}

/// Escape text for a Markdown table cell: pipes, backticks, newlines, HTML.
pub fn md_cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('`', "'")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace(['\r', '\n'], " ")
}

/// Text inside a fenced block cannot close the fence.
fn fence_safe(s: &str) -> String {
    s.replace("```", "'''")
}

fn first_line(s: &str, max: usize) -> String {
    let l = s.lines().next().unwrap_or("");
    if l.chars().count() > max {
        let mut t: String = l.chars().take(max).collect();
        t.push('…');
        t
    } else {
        l.to_string()
    }
}
