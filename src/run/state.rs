//! Per-job state on disk: `OUT/jobs/<job-id>/state.json`.
//!
//! Each finished stage is recorded with the digests of its inputs and of its
//! output files. A stage is reused on a re-run only when its inputs are the
//! same and each recorded output still exists with the recorded digest.
//! Output files are re-hashed only when their size or mtime changed, so a
//! no-op re-run costs a few `stat` calls per job. The file is replaced
//! atomically after every stage, so a killed run leaves either the old or
//! the new state, never half of one.

use super::{PublishOutput, RunSettings, StageData, StageKind, StageOutput};
use crate::plan::Job;
use crate::recipe::{Recipe, Target};
use crate::util::fsx;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bumped when the state layout changes; other versions are ignored (the job
/// re-runs) rather than misread.
pub const SCHEMA: u32 = 2;

/// One output of a finished stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    pub path: PathBuf,
    /// sha256 of a file; `None` for a directory (checked for existence only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub mtime_ns: i128,
}

impl ArtifactRecord {
    /// Record a path as it is now.
    pub fn capture(path: &Path) -> Result<ArtifactRecord> {
        let md = std::fs::metadata(path)
            .with_context(|| format!("artifact {} does not exist", path.display()))?;
        if md.is_dir() {
            return Ok(ArtifactRecord {
                path: path.to_path_buf(),
                sha256: None,
                size: 0,
                mtime_ns: 0,
            });
        }
        Ok(ArtifactRecord {
            path: path.to_path_buf(),
            sha256: Some(fsx::sha256_file(path)?),
            size: md.len(),
            mtime_ns: mtime_ns(&md),
        })
    }

    /// Is the artifact still what was recorded? Re-hashes only when size or
    /// mtime moved.
    pub fn intact(&self) -> bool {
        let Ok(md) = std::fs::metadata(&self.path) else {
            return false;
        };
        match &self.sha256 {
            None => md.is_dir(),
            Some(want) => {
                if !md.is_file() {
                    return false;
                }
                if md.len() == self.size && mtime_ns(&md) == self.mtime_ns {
                    return true;
                }
                md.len() == self.size && fsx::sha256_file(&self.path).is_ok_and(|h| &h == want)
            }
        }
    }

    /// The digest later stages see as their input.
    pub fn digest(&self) -> String {
        match &self.sha256 {
            Some(h) => h.clone(),
            None => format!("dir:{}", self.path.display()),
        }
    }
}

fn mtime_ns(md: &std::fs::Metadata) -> i128 {
    use std::os::unix::fs::MetadataExt;
    md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128
}

/// One finished stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    pub stage: StageKind,
    pub inputs: BTreeMap<String, String>,
    /// The stage's typed output, as later stages read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<StageData>,
    /// The files behind `data`, by field, with their digests.
    pub outputs: BTreeMap<String, ArtifactRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
    pub seconds: f64,
    pub finished_at: String,
}

impl StageRecord {
    /// The output as the next stages see it.
    pub fn output(&self) -> StageOutput {
        StageOutput {
            data: self.data.clone(),
            summary: self.summary.clone(),
            detail: self.detail.clone(),
            failure: None,
        }
    }

    /// `<stage>.<artifact>` → digest. The JSON detail is left out on
    /// purpose: it is informational, and floats in it need not survive a
    /// save/load round trip bit for bit, which would make a reloaded record
    /// look changed and re-run every later stage.
    pub fn chain_digests(&self) -> BTreeMap<String, String> {
        self.outputs
            .iter()
            .map(|(k, a)| (format!("{}.{k}", self.stage), a.digest()))
            .collect()
    }
}

/// The last failure of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub stage: StageKind,
    pub error: String,
    pub inputs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
    pub at: String,
}

/// `OUT/jobs/<job-id>/state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    pub schema: u32,
    pub job: String,
    pub kernel: String,
    /// Finished stages, in pipeline order.
    pub stages: Vec<StageRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

impl JobState {
    pub fn fresh(job: &Job) -> JobState {
        JobState {
            schema: SCHEMA,
            job: job.id.clone(),
            kernel: job.kernel.to_string(),
            stages: Vec::new(),
            failure: None,
        }
    }

    /// The record of `kind` if it finished with exactly these inputs and its
    /// outputs are intact.
    pub fn finished(
        &self,
        kind: StageKind,
        inputs: &BTreeMap<String, String>,
    ) -> Option<&StageRecord> {
        self.stages
            .iter()
            .find(|r| r.stage == kind)
            .filter(|r| &r.inputs == inputs && r.outputs.values().all(ArtifactRecord::intact))
    }

    /// Record a finished stage, replacing an older record of it; records stay
    /// in pipeline order.
    pub fn put(&mut self, rec: StageRecord) {
        self.stages.retain(|r| r.stage != rec.stage);
        self.stages.push(rec);
        self.stages.sort_by_key(|r| r.stage);
    }

    /// Forget `kind` and every later stage (they depend on it).
    pub fn truncate_from(&mut self, kind: StageKind) {
        self.stages.retain(|r| r.stage < kind);
    }

    pub fn set_failure(
        &mut self,
        stage: StageKind,
        error: &str,
        inputs: BTreeMap<String, String>,
        detail: serde_json::Value,
    ) {
        self.truncate_from(stage);
        self.failure = Some(Failure {
            stage,
            error: error.to_string(),
            inputs,
            detail,
            at: now(),
        });
    }

    /// Write `state.json` atomically.
    pub fn save(&self, job_dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).context("serializing job state")?;
        fsx::write_atomic(&job_dir.join("state.json"), &bytes)
    }

    /// Is every stage finished (the job passed when last run)?
    pub fn complete(&self) -> bool {
        self.failure.is_none()
            && StageKind::ALL
                .iter()
                .all(|k| self.stages.iter().any(|r| r.stage == *k))
    }
}

/// Load a job's state. A missing file gives a fresh state; an unreadable or
/// foreign one (other schema, other job) also gives a fresh state plus a note
/// saying why, because the job can always be redone from scratch.
pub fn load(job_dir: &Path, job: &Job) -> (JobState, Option<String>) {
    let path = job_dir.join("state.json");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (JobState::fresh(job), None),
        Err(e) => {
            return (
                JobState::fresh(job),
                Some(format!("ignoring {}: {e}", path.display())),
            )
        }
    };
    match serde_json::from_slice::<JobState>(&bytes) {
        Ok(s) if s.schema == SCHEMA && s.job == job.id => (s, None),
        Ok(s) => (
            JobState::fresh(job),
            Some(format!(
                "ignoring {}: schema {} for job {} (expected schema {SCHEMA} for {})",
                path.display(),
                s.schema,
                s.job,
                job.id
            )),
        ),
        Err(e) => (
            JobState::fresh(job),
            Some(format!(
                "ignoring {}: not a job state ({e}); starting over",
                path.display()
            )),
        ),
    }
}

/// Read a job's state without a plan (for reports and tools).
pub fn read(job_dir: &Path) -> Result<JobState> {
    let path = job_dir.join("state.json");
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a khotfix job state", path.display()))
}

/// Record a finished stage: every file of its output must exist; files are
/// hashed.
pub fn record(
    kind: StageKind,
    inputs: BTreeMap<String, String>,
    out: &StageOutput,
    seconds: f64,
) -> Result<StageRecord> {
    let mut outputs = BTreeMap::new();
    for (name, path) in out.data.iter().flat_map(StageData::files) {
        if !path.is_absolute() {
            bail!(
                "stage {kind} returned {name} with a relative path {}; outputs must be absolute",
                path.display()
            );
        }
        let rec = ArtifactRecord::capture(path)
            .with_context(|| format!("stage {kind} returned {name}"))?;
        outputs.insert(name.to_string(), rec);
    }
    Ok(StageRecord {
        stage: kind,
        inputs,
        data: out.data.clone(),
        outputs,
        summary: out.summary.clone(),
        detail: out.detail.clone(),
        seconds,
        finished_at: now(),
    })
}

/// Digests of what a job is made of: the job itself (kernel, target,
/// backend, package name), the recipe file, each patch and the module
/// source tree. Editing any of them restarts the job from the first stage
/// that reads sources (prepare).
pub fn source_digests(
    job: &Job,
    recipe: &Recipe,
    target: &Target,
) -> Result<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    let job_json = serde_json::json!({
        "id": job.id, "kernel": job.kernel, "target": job.target, "distro": job.distro,
        "backend": job.backend, "package": job.package, "hotfix_id": job.hotfix_id,
        "khotfix": env!("CARGO_PKG_VERSION"),
    });
    m.insert("job".into(), sha256_hex(job_json.to_string().as_bytes()));
    m.insert(
        "recipe".into(),
        fsx::sha256_file(&recipe.path)
            .with_context(|| format!("recipe {}", recipe.path.display()))?,
    );
    for (i, p) in target.patches.iter().enumerate() {
        let d = fsx::sha256_file(p).with_context(|| format!("patch {}", p.display()))?;
        m.insert(format!("patch.{i}"), d);
    }
    if let Some(dir) = &target.module_source {
        m.insert("module_source".into(), tree_digest(dir)?);
    }
    Ok(m)
}

/// Digest of a directory tree: relative paths, modes and file bytes, in
/// sorted order (symlinks by target).
pub fn tree_digest(dir: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::PermissionsExt;
    let mut h = Sha256::new();
    for e in walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .follow_links(false)
    {
        let e = e.with_context(|| format!("walking {}", dir.display()))?;
        let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        let ft = e.file_type();
        if ft.is_file() {
            let md = e
                .metadata()
                .with_context(|| format!("reading {}", e.path().display()))?;
            h.update(format!("f{:o}:", md.permissions().mode() & 0o777).as_bytes());
            h.update(fsx::sha256_file(e.path())?.as_bytes());
        } else if ft.is_symlink() {
            let t = std::fs::read_link(e.path())
                .with_context(|| format!("reading link {}", e.path().display()))?;
            h.update(b"l:");
            h.update(t.to_string_lossy().as_bytes());
        } else {
            h.update(b"d");
        }
        h.update([0]);
    }
    Ok(hex::encode(h.finalize()))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// UTC timestamp, RFC 3339.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// An exclusive lock on a job directory, held while the job runs.
pub struct JobLock {
    _file: std::fs::File,
}

/// Take the job's lock, or fail at once naming the directory when another
/// khotfix process holds it.
pub fn lock_job(job_dir: &Path) -> Result<JobLock> {
    use fs2::FileExt;
    std::fs::create_dir_all(job_dir).with_context(|| format!("creating {}", job_dir.display()))?;
    let path = job_dir.join(".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.try_lock_exclusive().with_context(|| {
        format!(
            "{} is locked: another khotfix run is working on this job",
            job_dir.display()
        )
    })?;
    Ok(JobLock { _file: f })
}

// ---- publish state ------------------------------------------------------------

/// `OUT/publish.json`: what was last published where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PublishState {
    schema: u32,
    inputs: BTreeMap<String, String>,
    output: PublishOutput,
    /// Digest of `repodata/repomd.xml` right after publishing: if someone
    /// rewrote the repository since, publish runs again.
    #[serde(default)]
    repomd: Option<String>,
    at: String,
}

/// The set of RPMs (by file name and digest) and the target repository.
pub fn publish_inputs(
    rpms: &[PathBuf],
    settings: &RunSettings,
) -> Result<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    m.insert("repo".into(), settings.repo.display().to_string());
    for r in rpms {
        let name = r
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        m.insert(format!("rpm.{name}"), fsx::sha256_file(r)?);
    }
    Ok(m)
}

fn repomd_digest(repo: &Path) -> Option<String> {
    fsx::sha256_file(&repo.join("repodata/repomd.xml")).ok()
}

/// The previous publish output, if the same inputs were published and the
/// repository is still as it was left.
pub fn load_publish(out: &Path, inputs: &BTreeMap<String, String>) -> Option<PublishOutput> {
    let bytes = std::fs::read(out.join("publish.json")).ok()?;
    let st: PublishState = serde_json::from_slice(&bytes).ok()?;
    let same_repo = match &st.repomd {
        Some(d) => repomd_digest(&st.output.repo).as_ref() == Some(d),
        None => st.output.repo.is_dir(),
    };
    (st.schema == SCHEMA && &st.inputs == inputs && same_repo).then_some(st.output)
}

pub fn save_publish(
    out: &Path,
    inputs: &BTreeMap<String, String>,
    output: &PublishOutput,
) -> Result<()> {
    let st = PublishState {
        schema: SCHEMA,
        inputs: inputs.clone(),
        output: output.clone(),
        repomd: repomd_digest(&output.repo),
        at: now(),
    };
    fsx::write_atomic(&out.join("publish.json"), &serde_json::to_vec_pretty(&st)?)
}
