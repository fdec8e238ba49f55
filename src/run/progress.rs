//! Progress of `khotfix run`: the orchestrator's events (job started, stage
//! started/cached/done/failed, job finished) said once, here, in words, and
//! sent to the run's [`Reporter`]: the root for the run (`done`/`total`
//! jobs), one child per running job. How they look (an overall bar and a
//! spinner per job, `khotfix: <job>: <stage> ...` lines, nothing) is the
//! binary's choice (`cli::progress::RunDisplay`).

use super::StageKind;
use crate::progress::{Reporter, SharedReporter};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub(crate) struct Progress {
    root: SharedReporter,
    total: u64,
    done: AtomicU64,
    jobs: Mutex<HashMap<String, Box<dyn Reporter>>>,
}

impl Progress {
    pub(crate) fn new(root: SharedReporter, total: usize) -> Progress {
        root.as_ref().progress(0, Some(total as u64));
        Progress {
            root,
            total: total as u64,
            done: AtomicU64::new(0),
            jobs: Mutex::new(HashMap::new()),
        }
    }

    /// Run `f` on the job's reporter (the root, with the job named, if the
    /// job was not started).
    fn job(&self, job: &str, f: impl FnOnce(&dyn Reporter)) {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        match jobs.get(job) {
            Some(r) => f(r.as_ref()),
            None => f(&Named {
                name: job,
                root: self.root.as_ref(),
            }),
        }
    }

    pub(crate) fn job_started(&self, job: &str) {
        let r = self.root.as_ref().child(job, None);
        r.status("starting");
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.to_string(), r);
    }

    pub(crate) fn job_finished(&self, job: &str, passed: bool) {
        let word = if passed { "passed" } else { "FAILED" };
        let r = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(job);
        if let Some(r) = r {
            r.finish(passed, word);
        }
        let done = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        let root = self.root.as_ref();
        root.progress(done, Some(self.total));
        root.note(&format!("{job}: {word}"));
    }

    pub(crate) fn stage_started(&self, job: &str, kind: StageKind) {
        self.job(job, |r| {
            r.status(&format!("{kind}…"));
            r.event(&format!("{kind} started"));
        });
    }

    pub(crate) fn stage_note(&self, job: &str, kind: StageKind, msg: &str) {
        let line = format!("{kind}: {msg}");
        self.job(job, |r| {
            r.status(&line);
            r.event(&line);
        });
    }

    pub(crate) fn stage_cached(&self, job: &str, kind: StageKind) {
        self.job(job, |r| r.event(&format!("{kind} up to date")));
    }

    pub(crate) fn stage_done(&self, job: &str, kind: StageKind, secs: f64) {
        self.job(job, |r| r.event(&format!("{kind} done in {secs:.1}s")));
    }

    pub(crate) fn stage_failed(&self, job: &str, kind: Option<StageKind>, msg: &str) {
        let first = msg.lines().next().unwrap_or(msg);
        let line = match kind {
            Some(k) => format!("{k} failed: {first}"),
            None => format!("failed: {first}"),
        };
        self.job(job, |r| r.note(&line));
    }

    pub(crate) fn note(&self, job: &str, msg: &str) {
        self.job(job, |r| r.note(msg));
    }

    /// A run-wide step ("publish").
    pub(crate) fn message(&self, msg: &str) {
        self.root.as_ref().status(msg);
        self.root.as_ref().event(msg);
    }

    pub(crate) fn finish(&self) {
        self.root.as_ref().finish(true, "");
    }
}

/// A job's lines on the root reporter, prefixed with the job's name.
struct Named<'a> {
    name: &'a str,
    root: &'a dyn Reporter,
}

impl Reporter for Named<'_> {
    fn event(&self, msg: &str) {
        self.root.event(&format!("{}: {msg}", self.name));
    }
    fn note(&self, msg: &str) {
        self.root.note(&format!("{}: {msg}", self.name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Every call, as `who method msg`.
    #[derive(Default)]
    struct Record(Arc<Mutex<Vec<String>>>);

    impl Record {
        fn push(&self, s: String) {
            self.0.lock().unwrap().push(s);
        }
    }

    struct Child(String, Arc<Mutex<Vec<String>>>);

    impl Reporter for Record {
        fn status(&self, m: &str) {
            self.push(format!("run status {m}"));
        }
        fn event(&self, m: &str) {
            self.push(format!("run event {m}"));
        }
        fn note(&self, m: &str) {
            self.push(format!("run note {m}"));
        }
        fn progress(&self, d: u64, t: Option<u64>) {
            self.push(format!("run progress {d}/{t:?}"));
        }
        fn child(&self, name: &str, _t: Option<u64>) -> Box<dyn Reporter> {
            Box::new(Child(name.into(), self.0.clone()))
        }
        fn finish(&self, ok: bool, m: &str) {
            self.push(format!("run finish {ok} {m}"));
        }
    }

    impl Reporter for Child {
        fn status(&self, m: &str) {
            self.1
                .lock()
                .unwrap()
                .push(format!("{} status {m}", self.0));
        }
        fn event(&self, m: &str) {
            self.1.lock().unwrap().push(format!("{} event {m}", self.0));
        }
        fn note(&self, m: &str) {
            self.1.lock().unwrap().push(format!("{} note {m}", self.0));
        }
        fn finish(&self, ok: bool, m: &str) {
            self.1
                .lock()
                .unwrap()
                .push(format!("{} finish {ok} {m}", self.0));
        }
    }

    #[test]
    fn run_events_reach_the_reporter_in_words() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let p = Progress::new(SharedReporter::new(Record(log.clone())), 2);
        p.job_started("j1");
        p.stage_started("j1", StageKind::Fetch);
        p.stage_note("j1", StageKind::Fetch, "downloading");
        p.stage_cached("j1", StageKind::Prepare);
        p.stage_done("j1", StageKind::Fetch, 2.0);
        p.stage_failed("j1", Some(StageKind::Build), "no module\nmore");
        p.note("j1", "hello");
        p.job_finished("j1", false);
        p.note("j2", "before it started");
        p.message("publish");
        p.finish();
        let got = log.lock().unwrap().clone();
        assert_eq!(
            got,
            [
                "run progress 0/Some(2)",
                "j1 status starting",
                "j1 status fetch…",
                "j1 event fetch started",
                "j1 status fetch: downloading",
                "j1 event fetch: downloading",
                "j1 event prepare up to date",
                "j1 event fetch done in 2.0s",
                "j1 note build failed: no module",
                "j1 note hello",
                "j1 finish false FAILED",
                "run progress 1/Some(2)",
                "run note j1: FAILED",
                "run note j2: before it started",
                "run status publish",
                "run event publish",
                "run finish true ",
            ]
        );
    }
}
