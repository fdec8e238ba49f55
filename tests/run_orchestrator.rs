//! Tests of the orchestrator itself (`khotfix::run`): state machine,
//! resumption, input-change restarts, failure isolation, parallelism,
//! publish-once, `--job-index` selection and the reports.
//!
//! The stages here are *orchestrator test stages*: small functions that write
//! files into their work directory and count their calls. They stand in for
//! nothing: the point is to watch what the orchestrator does with stages
//! (which it runs, skips, records and reports), independent of kernels.

use khotfix::build::BuildOutput;
use khotfix::fetch::{FetchedKernel, RpmKernel};
use khotfix::plan::Plan;
use khotfix::recipe::Recipe;
use khotfix::run::artifacts::{PackagedRpm, PrepareOutput, SignOutput, StageData, VerifyOutput};
use khotfix::run::{
    self, JobContext, JobStatus, Pipeline, PublishOutput, PublishStatus, RunSettings, Selection,
    StageKind, StageOutput, StageStatus,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A recipe tree: root/recipes/r.toml with two kbuild targets ("good" and
/// "bad") on two Debian kernels each, and their module sources.
struct Fixture {
    dir: tempfile::TempDir,
    recipe: Recipe,
    plan: Plan,
}

const RECIPE: &str = r#"
[hotfix]
id = 4242
name = "orchestrator-test"
summary = "Orchestrator test recipe"
description = "Used by tests/run_orchestrator.rs."
version = "1.0"
backend = "kbuild"

[[target]]
name = "good"
distro = "debian12"
kernels = ["6.1.0-55-amd64", "6.1.0-56-amd64"]
module_source = "src/good"

[[target]]
name = "bad"
distro = "debian12"
kernels = ["6.1.0-54-amd64"]
module_source = "src/bad"
"#;

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        for t in ["good", "bad"] {
            let d = dir.path().join("src").join(t);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("livepatch.c"), format!("/* {t} */\n")).unwrap();
            std::fs::write(d.join("Kbuild"), "obj-m := kpatch-4242.o\n").unwrap();
        }
        std::fs::create_dir_all(dir.path().join("recipes")).unwrap();
        let rp = dir.path().join("recipes/r.toml");
        std::fs::write(&rp, RECIPE).unwrap();
        let recipe = Recipe::load(&rp).unwrap_or_else(|e| panic!("{e}"));
        let plan = Plan::expand(std::slice::from_ref(&recipe), &[]).unwrap();
        assert_eq!(plan.jobs.len(), 3, "{:?}", plan.jobs);
        Fixture { dir, recipe, plan }
    }
    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }
    fn settings(&self) -> RunSettings {
        let mut s = RunSettings::new(self.out());
        s.parallel = 2;
        s
    }
    fn run(&self, p: &Pipeline, sel: &Selection) -> run::RunReport {
        run::run(
            p,
            std::slice::from_ref(&self.recipe),
            &self.plan,
            sel,
            &self.settings(),
        )
        .unwrap()
    }
    fn reload(&mut self) {
        self.recipe =
            Recipe::load(&self.dir.path().join("recipes/r.toml")).unwrap_or_else(|e| panic!("{e}"));
        self.plan = Plan::expand(std::slice::from_ref(&self.recipe), &[]).unwrap();
    }
}

/// Calls per (stage, job id), and a switch to make one target fail a stage.
#[derive(Default)]
struct Calls {
    n: Mutex<BTreeMap<(StageKind, String), usize>>,
    published: Mutex<Vec<Vec<PathBuf>>>,
}

impl Calls {
    fn count(&self, k: StageKind, job: &str) -> usize {
        self.n
            .lock()
            .unwrap()
            .get(&(k, job.to_string()))
            .copied()
            .unwrap_or(0)
    }
    fn total(&self, k: StageKind) -> usize {
        self.n
            .lock()
            .unwrap()
            .iter()
            .filter(|((s, _), _)| *s == k)
            .map(|(_, n)| n)
            .sum()
    }
}

/// Orchestrator test stage: writes `<stage>.out` holding the job id and the
/// previous stage's output bytes, so outputs chain like real stages do.
fn test_stage(
    kind: StageKind,
    calls: Arc<Calls>,
    fail_target: Option<(&'static str, StageKind)>,
) -> impl Fn(&JobContext) -> anyhow::Result<StageOutput> {
    move |cx: &JobContext| {
        *calls
            .n
            .lock()
            .unwrap()
            .entry((kind, cx.job.id.clone()))
            .or_default() += 1;
        if let Some((t, k)) = fail_target {
            if cx.job.target == t && k == kind {
                anyhow::bail!("{kind} refused target {t} (orchestrator test failure)");
            }
        }
        let prev = previous_file(cx, kind)
            .map(|p| std::fs::read(p).unwrap())
            .unwrap_or_default();
        let path = cx.work_dir.join(format!("{kind}.out"));
        let mut bytes = format!("{kind} {}\n", cx.job.id).into_bytes();
        bytes.extend(prev);
        if kind == StageKind::Prepare {
            // Like a real prepare: the output reflects the sources.
            let src = cx
                .target
                .module_source
                .as_ref()
                .unwrap()
                .join("livepatch.c");
            bytes.extend(std::fs::read(src)?);
        }
        std::fs::write(&path, &bytes)?;
        let rpm = cx.work_dir.join(format!("{}.rpm", cx.job.package));
        if kind == StageKind::Package {
            std::fs::write(&rpm, &bytes)?;
        }
        Ok(StageOutput::of(typed_output(cx, kind, path, rpm)).summary(format!("{kind} ok")))
    }
}

/// The typed output of stage `kind` with `file` in its main slot (the
/// package stage's RPM is `rpm`): the orchestrator only digests the files.
fn typed_output(cx: &JobContext, kind: StageKind, file: PathBuf, rpm: PathBuf) -> StageData {
    match kind {
        StageKind::Fetch => StageData::Fetch(FetchedKernel::Rpm(RpmKernel {
            kernel: cx.job.kernel.clone(),
            source_rpm: file.clone(),
            debuginfo_rpm: file.clone(),
            debuginfo_common_rpm: file.clone(),
            devel_rpm: file,
            files: Vec::new(),
        })),
        StageKind::Prepare => StageData::Prepare(PrepareOutput::SourceRpm { vmlinux: file }),
        StageKind::Build => StageData::Build(BuildOutput {
            job: cx.job.id.clone(),
            backend: cx.job.backend,
            kernel: cx.job.kernel.to_string(),
            module: file.clone(),
            module_name: "kpatch_test".into(),
            cache_hit: false,
            cache_key: String::new(),
            image: "test".into(),
            log: file,
            seconds: 0.0,
        }),
        StageKind::Sign => StageData::Sign(SignOutput {
            module: file,
            cert: None,
        }),
        StageKind::Package => StageData::Package(PackagedRpm {
            rpm,
            key: file,
            nevra: cx.job.package.clone(),
        }),
        StageKind::Verify => StageData::Verify(VerifyOutput { report: file }),
    }
}

/// The main file of the stage before `kind`, as [`typed_output`] placed it.
fn previous_file<'a>(cx: &'a JobContext, kind: StageKind) -> Option<&'a Path> {
    let a = cx.artifacts;
    match kind {
        StageKind::Fetch => None,
        StageKind::Prepare => match a.fetch.as_ref()? {
            FetchedKernel::Rpm(k) => Some(&k.source_rpm),
            FetchedKernel::Deb(_) => None,
        },
        StageKind::Build => match a.prepare.as_ref()? {
            PrepareOutput::SourceRpm { vmlinux } => Some(vmlinux),
            _ => None,
        },
        StageKind::Sign => a.build.as_ref().map(|b| b.module.as_path()),
        StageKind::Package => a.sign.as_ref().map(|s| s.module.as_path()),
        StageKind::Verify => a.package.as_ref().map(|p| p.key.as_path()),
    }
}

fn pipeline(calls: &Arc<Calls>, fail: Option<(&'static str, StageKind)>) -> Pipeline {
    let mut p = Pipeline::new();
    for k in StageKind::ALL {
        p = p.stage(k, test_stage(k, calls.clone(), fail));
    }
    let c = calls.clone();
    p.publisher(move |rpms: &[PathBuf], s: &RunSettings| {
        c.published.lock().unwrap().push(rpms.to_vec());
        std::fs::create_dir_all(s.repo.join("repodata"))?;
        std::fs::write(
            s.repo.join("repodata/repomd.xml"),
            format!("{} packages", rpms.len()),
        )?;
        Ok(PublishOutput {
            repo: s.repo.clone(),
            client_repo: Some(format!("baseurl=file://{}", s.repo.display())),
            detail: serde_json::Value::Null,
        })
    })
}

fn job<'a>(r: &'a run::RunReport, target: &str, kernel: &str) -> &'a run::JobResult {
    r.jobs
        .iter()
        .find(|j| j.id.contains(&format!("-{target}-")) && j.kernel == kernel)
        .unwrap()
}

#[test]
fn full_run_then_noop_rerun() {
    let fx = Fixture::new();
    let calls = Arc::new(Calls::default());
    let p = pipeline(&calls, None);
    let r = fx.run(&p, &Selection::default());
    assert_eq!((r.passed, r.failed), (3, 0), "{}", r.to_table());
    assert_eq!(r.exit_code(), 0);
    for k in StageKind::ALL {
        assert_eq!(calls.total(k), 3, "{k}");
    }
    // State on disk: every stage recorded with inputs and output digests.
    for j in &fx.plan.jobs {
        let st = run::state::read(&fx.out().join("jobs").join(&j.id)).unwrap();
        assert!(st.complete(), "{st:?}");
        assert_eq!(
            st.stages.iter().map(|s| s.stage).collect::<Vec<_>>(),
            StageKind::ALL.to_vec()
        );
        let build = &st.stages[2];
        assert!(
            build.inputs.contains_key("module_source")
                && build.inputs.contains_key("prepare.vmlinux"),
            "{:?}",
            build.inputs
        );
        assert!(
            !st.stages[0].inputs.contains_key("module_source"),
            "fetch must not depend on sources"
        );
        assert!(build.outputs["module"].sha256.is_some());
        let v = fx
            .out()
            .join("verified")
            .join(&j.id)
            .join(format!("{}.rpm", j.package));
        assert!(v.is_file(), "{}", v.display());
    }
    let published = calls.published.lock().unwrap().clone();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].len(), 3);
    assert!(published[0]
        .iter()
        .all(|p| p.starts_with(fx.out().join("verified"))));
    let pubr = r.publish.as_ref().unwrap();
    assert_eq!(pubr.status, PublishStatus::Done);

    // A no-op re-run: nothing runs, nothing is published again.
    let r2 = fx.run(&p, &Selection::default());
    assert_eq!(r2.passed, 3);
    for k in StageKind::ALL {
        assert_eq!(calls.total(k), 3, "{k} ran again");
    }
    assert!(r2.jobs.iter().all(|j| j.up_to_date()), "{}", r2.to_table());
    assert_eq!(r2.publish.as_ref().unwrap().status, PublishStatus::Cached);
    assert_eq!(calls.published.lock().unwrap().len(), 1);
    assert!(r2.to_table().contains("up-to-date"));
}

#[test]
fn changed_module_source_restarts_at_prepare_only_for_that_target() {
    let mut fx = Fixture::new();
    let calls = Arc::new(Calls::default());
    let p = pipeline(&calls, None);
    fx.run(&p, &Selection::default());
    std::fs::write(
        fx.dir.path().join("src/good/livepatch.c"),
        "/* good, fixed */\n",
    )
    .unwrap();
    fx.reload();
    let r = fx.run(&p, &Selection::default());
    assert_eq!(r.passed, 3);
    let good = job(&r, "good", "6.1.0-56-amd64");
    let statuses: Vec<_> = good.stages.iter().map(|s| s.status).collect();
    assert_eq!(
        statuses[0],
        StageStatus::Cached,
        "fetch does not read sources"
    );
    assert!(
        statuses[1..].iter().all(|s| *s == StageStatus::Done),
        "{statuses:?}"
    );
    assert!(job(&r, "bad", "6.1.0-54-amd64").up_to_date());
    assert_eq!(calls.count(StageKind::Fetch, &good.id), 1);
    assert_eq!(calls.count(StageKind::Prepare, &good.id), 2);
    // The RPM set changed, so publish ran again.
    assert_eq!(r.publish.as_ref().unwrap().status, PublishStatus::Done);
    assert_eq!(calls.published.lock().unwrap().len(), 2);

    // Editing the recipe file restarts every job from prepare.
    let rp = fx.dir.path().join("recipes/r.toml");
    let text = std::fs::read_to_string(&rp)
        .unwrap()
        .replace("version = \"1.0\"", "version = \"1.1\"");
    std::fs::write(&rp, text).unwrap();
    fx.reload();
    let before = calls.total(StageKind::Prepare);
    fx.run(&p, &Selection::default());
    assert_eq!(calls.total(StageKind::Prepare), before + 3);
    assert_eq!(calls.total(StageKind::Fetch), 3);
}

#[test]
fn tampered_output_reruns_that_stage_and_later_ones() {
    let fx = Fixture::new();
    let calls = Arc::new(Calls::default());
    let p = pipeline(&calls, None);
    fx.run(&p, &Selection::default());
    let id = fx.plan.jobs[0].id.clone();
    let built = fx.out().join("jobs").join(&id).join("build/build.out");
    std::fs::write(&built, "tampered").unwrap();
    let r = fx.run(&p, &Selection::default());
    assert_eq!(calls.count(StageKind::Build, &id), 2);
    assert_eq!(calls.count(StageKind::Prepare, &id), 1);
    // Build produced the same bytes again, so sign's inputs are unchanged.
    assert_eq!(calls.count(StageKind::Sign, &id), 1);
    assert_eq!(r.passed, 3);
    // Deleting an output of a finished stage also re-runs it.
    std::fs::remove_file(fx.out().join("jobs").join(&id).join("sign/sign.out")).unwrap();
    fx.run(&p, &Selection::default());
    assert_eq!(calls.count(StageKind::Sign, &id), 2);
}

#[test]
fn one_failing_job_does_not_stop_the_others_and_is_not_published() {
    let fx = Fixture::new();
    let calls = Arc::new(Calls::default());
    let p = pipeline(&calls, Some(("bad", StageKind::Prepare)));
    let r = fx.run(&p, &Selection::default());
    assert_eq!((r.passed, r.failed), (2, 1));
    assert_eq!(r.exit_code(), 1);
    let bad = job(&r, "bad", "6.1.0-54-amd64");
    assert_eq!(bad.status, JobStatus::Failed);
    assert_eq!(bad.failed_stage, Some(StageKind::Prepare));
    assert!(bad.error.as_deref().unwrap().contains("refused target bad"));
    assert_eq!(calls.count(StageKind::Build, &bad.id), 0);
    let published = calls.published.lock().unwrap()[0].clone();
    assert_eq!(published.len(), 2);
    assert!(!published
        .iter()
        .any(|p| p.to_string_lossy().contains(&bad.id)));
    assert!(!fx.out().join("verified").join(&bad.id).exists());
    // The failure is on disk for the next run.
    let st = run::state::read(&fx.out().join("jobs").join(&bad.id)).unwrap();
    assert_eq!(st.failure.as_ref().unwrap().stage, StageKind::Prepare);
    assert_eq!(st.stages.len(), 1);
    // Reports name it.
    let md = r.to_markdown();
    assert!(md.contains("2 passed, 1 failed"), "{md}");
    assert!(md.contains(&format!("#### `{}` — prepare", bad.id)), "{md}");
    assert!(r.to_table().contains("FAILED"));

    // Fixed: the re-run resumes the failed job at prepare (fetch reused).
    let p2 = pipeline(&calls, None);
    let r2 = fx.run(&p2, &Selection::default());
    assert_eq!(r2.passed, 3);
    assert_eq!(calls.count(StageKind::Fetch, &bad.id), 1);
    assert_eq!(calls.count(StageKind::Prepare, &bad.id), 2);
}

#[test]
fn verify_verdict_fails_the_job_and_keeps_its_detail() {
    let fx = Fixture::new();
    let calls = Arc::new(Calls::default());
    let p = pipeline(&calls, None).stage(StageKind::Verify, |cx: &JobContext| {
        let detail = serde_json::json!({"checks": [
            {"name": "vermagic", "outcome": "pass", "message": "ok"},
            {"name": "livepatch-patched", "outcome": "fail", "message": "ip_vs patched = 0 | pipe"},
        ]});
        let out = StageOutput::new().detail(detail);
        Ok(if cx.job.target == "bad" {
            out.failed("verify failed: livepatch-patched")
        } else {
            out
        })
    });
    let r = fx.run(&p, &Selection::default());
    let bad = job(&r, "bad", "6.1.0-54-amd64");
    assert_eq!(bad.failed_stage, Some(StageKind::Verify));
    assert!(bad.rpm.is_none());
    assert_eq!(calls.published.lock().unwrap()[0].len(), 2);
    let md = r.to_markdown();
    assert!(
        md.contains("| livepatch-patched | ❌ fail | ip_vs patched = 0 \\| pipe |"),
        "{md}"
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["failed"], 1);
}

#[test]
fn panicking_stage_and_missing_artifact_fail_only_their_job() {
    let fx = Fixture::new();
    let calls = Arc::new(Calls::default());
    let p = pipeline(&calls, None)
        .stage(StageKind::Build, |cx: &JobContext| {
            if cx.job.target == "bad" {
                panic!("orchestrator test panic");
            }
            Ok(StageOutput::new())
        })
        .stage(StageKind::Sign, |cx: &JobContext| {
            if cx.job.kernel.as_str() == "6.1.0-55-amd64" {
                return Ok(StageOutput::of(StageData::Sign(SignOutput {
                    module: cx.work_dir.join("missing.ko"),
                    cert: None,
                })));
            }
            Ok(StageOutput::new())
        });
    let r = fx.run(&p, &Selection::default());
    assert!(job(&r, "bad", "6.1.0-54-amd64")
        .error
        .as_deref()
        .unwrap()
        .contains("panicked: orchestrator test panic"));
    let e = job(&r, "good", "6.1.0-55-amd64").error.clone().unwrap();
    assert!(
        e.contains("missing.ko") && e.contains("returned module"),
        "{e}"
    );
    assert_eq!(job(&r, "good", "6.1.0-56-amd64").status, JobStatus::Passed);
}

#[test]
fn missing_stage_is_a_clear_failure_not_a_success() {
    let fx = Fixture::new();
    let r = fx.run(&Pipeline::new(), &Selection::default());
    assert_eq!(r.failed, 3);
    assert!(r.jobs[0]
        .error
        .as_deref()
        .unwrap()
        .contains("stage fetch is not available"));
    assert_eq!(r.publish.as_ref().unwrap().status, PublishStatus::Skipped);
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn job_index_runs_one_job_without_publish() {
    let fx = Fixture::new();
    let calls = Arc::new(Calls::default());
    let p = pipeline(&calls, None);
    let sel = Selection {
        index: Some(1),
        expect_plan: Some(run::plan_digest(&fx.plan)),
        expect_job: Some(fx.plan.jobs[1].id.clone()),
    };
    let mut s = fx.settings();
    s.publish = false;
    let r = run::run(&p, std::slice::from_ref(&fx.recipe), &fx.plan, &sel, &s).unwrap();
    assert_eq!(r.jobs.len(), 1);
    assert_eq!(r.jobs[0].id, fx.plan.jobs[1].id);
    assert_eq!(r.jobs[0].index, 1);
    assert!(r.publish.is_none());
    assert_eq!(r.exit_code(), 0);
    assert!(calls.published.lock().unwrap().is_empty());
    assert!(fx.out().join("verified").join(&fx.plan.jobs[1].id).is_dir());
    assert!(r.to_markdown().contains("not part of this run"));

    for bad in [
        Selection {
            index: Some(3),
            ..Default::default()
        },
        Selection {
            index: Some(0),
            expect_plan: Some("0000000000000000".into()),
            ..Default::default()
        },
        Selection {
            index: Some(0),
            expect_job: Some("other".into()),
            ..Default::default()
        },
    ] {
        let e = run::run(&p, std::slice::from_ref(&fx.recipe), &fx.plan, &bad, &s).unwrap_err();
        assert!(e.downcast_ref::<run::BadInput>().is_some(), "{e}");
    }
}

#[test]
fn parallelism_is_bounded() {
    let fx = Fixture::new();
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(Calls::default());
    let (a, pk) = (active.clone(), peak.clone());
    let p = pipeline(&calls, None).stage(StageKind::Build, move |_cx: &JobContext| {
        let now = a.fetch_add(1, Ordering::SeqCst) + 1;
        pk.fetch_max(now, Ordering::SeqCst);
        // Give the other workers time to arrive (bounded wait, no assertion on time).
        for _ in 0..50 {
            if a.load(Ordering::SeqCst) >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        a.fetch_sub(1, Ordering::SeqCst);
        Ok(StageOutput::new())
    });
    let r = fx.run(&p, &Selection::default()); // -j 2, 3 jobs
    assert_eq!(r.passed, 3);
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "never more than -j jobs at once, and -j 2 does run two"
    );
}

#[test]
fn corrupt_state_starts_over_and_locked_job_fails() {
    let fx = Fixture::new();
    let calls = Arc::new(Calls::default());
    let p = pipeline(&calls, None);
    fx.run(&p, &Selection::default());
    let id = fx.plan.jobs[0].id.clone();
    let jd = fx.out().join("jobs").join(&id);
    std::fs::write(jd.join("state.json"), "{ not json").unwrap();
    let r = fx.run(&p, &Selection::default());
    assert_eq!(r.passed, 3);
    assert_eq!(calls.count(StageKind::Fetch, &id), 2);
    assert!(run::state::read(&jd).unwrap().complete());

    let _held = run::state::lock_job(&jd).unwrap();
    let r = fx.run(&p, &Selection::default());
    let j = r.jobs.iter().find(|j| j.id == id).unwrap();
    assert!(
        j.error.as_deref().unwrap().contains("another khotfix run"),
        "{:?}",
        j.error
    );
    assert_eq!(r.passed, 2);
}

/// Killed in the middle of a build: a child process (this test binary, in
/// `child_killed_mid_build`) runs the pipeline with a build stage that
/// blocks; the parent kills it with SIGKILL once build has started, then
/// re-runs: fetch and prepare are reused, build runs again and finishes.
#[test]
fn killed_mid_build_resumes_without_redoing_earlier_stages() {
    if std::env::var_os("KHOTFIX_TEST_CHILD_OUT").is_some() {
        return;
    }
    let fx = Fixture::new();
    let started = fx.dir.path().join("build-started");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_killed_mid_build", "--nocapture"])
        .env("KHOTFIX_TEST_CHILD_OUT", fx.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut waited = 0;
    while !started.exists() && waited < 600 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        waited += 1;
    }
    assert!(started.exists(), "the child never reached build");
    child.kill().unwrap();
    child.wait().unwrap();
    let id = fx.plan.jobs[0].id.clone();
    let st = run::state::read(&fx.out().join("jobs").join(&id)).unwrap();
    assert_eq!(
        st.stages.iter().map(|s| s.stage).collect::<Vec<_>>(),
        vec![StageKind::Fetch, StageKind::Prepare]
    );

    let calls = Arc::new(Calls::default());
    let p = pipeline(&calls, None);
    let sel = Selection {
        index: Some(0),
        ..Default::default()
    };
    let r = fx.run(&p, &sel);
    assert_eq!(r.passed, 1);
    assert_eq!(calls.count(StageKind::Fetch, &id), 0);
    assert_eq!(calls.count(StageKind::Prepare, &id), 0);
    assert_eq!(calls.count(StageKind::Build, &id), 1);
    let s: Vec<_> = r.jobs[0].stages.iter().map(|s| s.status).collect();
    assert_eq!(
        &s[..3],
        &[StageStatus::Cached, StageStatus::Cached, StageStatus::Done]
    );
}

/// The child half of the kill test (does nothing unless started by it).
#[test]
fn child_killed_mid_build() {
    let Some(root) = std::env::var_os("KHOTFIX_TEST_CHILD_OUT") else {
        return;
    };
    let root = PathBuf::from(root);
    let recipe = Recipe::load(&root.join("recipes/r.toml")).unwrap();
    let plan = Plan::expand(std::slice::from_ref(&recipe), &[]).unwrap();
    let calls = Arc::new(Calls::default());
    let flag = root.join("build-started");
    let p = pipeline(&calls, None).stage(StageKind::Build, move |_cx: &JobContext| {
        std::fs::write(&flag, "")?;
        std::thread::sleep(std::time::Duration::from_secs(600));
        Ok(StageOutput::new())
    });
    let s = RunSettings::new(root.join("out"));
    let sel = Selection {
        index: Some(0),
        ..Default::default()
    };
    let _ = run::run(&p, std::slice::from_ref(&recipe), &plan, &sel, &s);
}

#[test]
fn artifacts_must_be_absolute() {
    let fx = Fixture::new();
    let calls = Arc::new(Calls::default());
    let p = pipeline(&calls, None).stage(StageKind::Fetch, |_cx: &JobContext| {
        Ok(StageOutput::of(StageData::Prepare(
            PrepareOutput::ModuleSource {
                dir: PathBuf::from("rel/x"),
            },
        )))
    });
    let r = fx.run(&p, &Selection::default());
    assert!(r
        .jobs
        .iter()
        .all(|j| j.error.as_deref().unwrap_or("").contains("relative path")));
}
