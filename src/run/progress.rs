//! Progress output for `khotfix run` on stderr: an overall indicatif bar plus
//! one spinner per running job showing its current stage when stderr is a
//! terminal; plain `khotfix: <job>: <stage> ...` lines otherwise (CI logs),
//! or nothing.

use super::StageKind;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// indicatif bars (stderr is a terminal).
    Bars,
    /// One line per event (logs).
    Lines,
    /// Nothing (tests, `--json` consumers that capture stderr).
    Quiet,
}

impl ProgressMode {
    /// Bars on a terminal, lines otherwise.
    pub fn detect() -> ProgressMode {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            ProgressMode::Bars
        } else {
            ProgressMode::Lines
        }
    }
}

pub(crate) struct Progress {
    mode: ProgressMode,
    multi: Option<MultiProgress>,
    overall: Option<ProgressBar>,
    jobs: Mutex<HashMap<String, ProgressBar>>,
}

impl Progress {
    pub(crate) fn new(mode: ProgressMode, total: usize) -> Progress {
        let (multi, overall) = if mode == ProgressMode::Bars {
            let m = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let bar = m.add(ProgressBar::new(total as u64));
            bar.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} jobs {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            (Some(m), Some(bar))
        } else {
            (None, None)
        };
        Progress {
            mode,
            multi,
            overall,
            jobs: Mutex::new(HashMap::new()),
        }
    }

    fn line(&self, s: &str) {
        match (self.mode, &self.multi) {
            (ProgressMode::Bars, Some(m)) => {
                let _ = m.println(s);
            }
            (ProgressMode::Lines, _) => eprintln!("khotfix: {s}"),
            _ => {}
        }
    }

    fn set(&self, job: &str, msg: String) {
        if let Ok(j) = self.jobs.lock() {
            if let Some(b) = j.get(job) {
                b.set_message(msg);
            }
        }
    }

    pub(crate) fn job_started(&self, job: &str) {
        if let (Some(m), Some(_)) = (&self.multi, &self.overall) {
            let b = m.add(ProgressBar::new_spinner());
            b.set_style(
                ProgressStyle::with_template("  {spinner} {prefix}: {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix(job.to_string());
            b.set_message("starting");
            b.enable_steady_tick(Duration::from_millis(200));
            if let Ok(mut j) = self.jobs.lock() {
                j.insert(job.to_string(), b);
            }
        }
    }

    pub(crate) fn job_finished(&self, job: &str, passed: bool) {
        if let Ok(mut j) = self.jobs.lock() {
            if let Some(b) = j.remove(job) {
                b.finish_and_clear();
                if let Some(m) = &self.multi {
                    m.remove(&b);
                }
            }
        }
        if let Some(o) = &self.overall {
            o.inc(1);
        }
        self.line(&format!(
            "{job}: {}",
            if passed { "passed" } else { "FAILED" }
        ));
    }

    pub(crate) fn stage_started(&self, job: &str, kind: StageKind) {
        self.set(job, format!("{kind}…"));
        if self.mode == ProgressMode::Lines {
            self.line(&format!("{job}: {kind} started"));
        }
    }

    pub(crate) fn stage_note(&self, job: &str, kind: StageKind, msg: &str) {
        self.set(job, format!("{kind}: {msg}"));
        if self.mode == ProgressMode::Lines {
            self.line(&format!("{job}: {kind}: {msg}"));
        }
    }

    pub(crate) fn stage_cached(&self, job: &str, kind: StageKind) {
        if self.mode == ProgressMode::Lines {
            self.line(&format!("{job}: {kind} up to date"));
        }
    }

    pub(crate) fn stage_done(&self, job: &str, kind: StageKind, secs: f64) {
        if self.mode == ProgressMode::Lines {
            self.line(&format!("{job}: {kind} done in {secs:.1}s"));
        }
    }

    pub(crate) fn stage_failed(&self, job: &str, kind: Option<StageKind>, msg: &str) {
        let first = msg.lines().next().unwrap_or(msg);
        match kind {
            Some(k) => self.line(&format!("{job}: {k} failed: {first}")),
            None => self.line(&format!("{job}: failed: {first}")),
        }
    }

    pub(crate) fn note(&self, job: &str, msg: &str) {
        self.line(&format!("{job}: {msg}"));
    }

    pub(crate) fn message(&self, msg: &str) {
        match &self.overall {
            Some(o) => o.set_message(msg.to_string()),
            None => self.line(msg),
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(o) = &self.overall {
            o.finish_and_clear();
        }
    }
}
