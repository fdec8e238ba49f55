//! The terminal side of [`khotfix::progress::Reporter`]: indicatif bars and
//! spinners, or plain lines, chosen by [`ProgressMode`]. Only the binary
//! depends on indicatif; the library reports through the trait.

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use khotfix::progress::{ProgressMode, Reporter};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// One spinner (a build job, a builder image) in a [`MultiProgress`].
pub struct Spinner {
    bar: ProgressBar,
}

impl Spinner {
    pub fn new(mp: &MultiProgress, prefix: String) -> Spinner {
        let bar = mp.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(prefix);
        bar.enable_steady_tick(std::time::Duration::from_millis(150));
        Spinner { bar }
    }

    /// Remove the spinner from the display.
    pub fn clear(&self) {
        self.bar.finish_and_clear();
    }
}

impl Reporter for Spinner {
    fn status(&self, msg: &str) {
        self.bar.set_message(msg.to_string());
    }

    fn finish(&self, _ok: bool, msg: &str) {
        self.bar.finish_with_message(msg.to_string());
    }
}

/// Download progress: one bar per file and an overall bar (bars), one line
/// per started/finished file (lines), or nothing.
pub struct FetchDisplay {
    bars: Option<MultiProgress>,
    overall: Mutex<Option<ProgressBar>>,
    plain: bool,
}

impl FetchDisplay {
    pub fn new(mode: ProgressMode) -> FetchDisplay {
        FetchDisplay {
            bars: (mode == ProgressMode::Bars)
                .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            overall: Mutex::new(None),
            plain: mode == ProgressMode::Lines,
        }
    }

    fn overall(&self) -> Option<ProgressBar> {
        self.overall.lock().ok().and_then(|o| o.clone())
    }
}

fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Reporter for FetchDisplay {
    /// The overall bar's label ("4 files").
    fn status(&self, msg: &str) {
        if let Some(o) = self.overall() {
            o.set_prefix(msg.to_string());
        }
    }

    fn note(&self, msg: &str) {
        if let Some(mp) = &self.bars {
            let _ = mp.println(msg);
        } else if self.plain {
            eprintln!("{msg}");
        }
    }

    /// The overall bar: a `total` starts it (once per fetch).
    fn progress(&self, done: u64, total: Option<u64>) {
        let Some(mp) = &self.bars else { return };
        let Ok(mut overall) = self.overall.lock() else {
            return;
        };
        if let (None, Some(t)) = (overall.as_ref(), total) {
            let bar = mp.add(ProgressBar::new(t));
            bar.set_style(bar_style(
                "{prefix:>12.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ));
            *overall = Some(bar);
        }
        if let Some(o) = overall.as_ref() {
            if let Some(t) = total {
                o.set_length(t);
            }
            o.set_position(done);
        }
    }

    fn child(&self, name: &str, total: Option<u64>) -> Box<dyn Reporter> {
        if self.plain {
            match total {
                Some(s) => eprintln!("fetch: {name} ({})", HumanBytes(s)),
                None => eprintln!("fetch: {name}"),
            }
        }
        let overall = self.overall();
        let bar = self.bars.as_ref().map(|mp| {
            let bar = ProgressBar::new(total.unwrap_or(0));
            let bar = match &overall {
                Some(o) => mp.insert_before(o, bar),
                None => mp.add(bar),
            };
            bar.set_style(bar_style(
                "{msg:40!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            ));
            bar.set_message(name.to_string());
            bar
        });
        Box::new(FileBar {
            name: name.to_string(),
            bar,
            overall,
            plain: self.plain,
            counted: AtomicU64::new(0),
        })
    }

    fn finish(&self, _ok: bool, _msg: &str) {
        if let Some(o) = self.overall.lock().ok().and_then(|mut o| o.take()) {
            o.finish();
        }
    }
}

/// Progress of one file of a [`FetchDisplay`].
struct FileBar {
    name: String,
    bar: Option<ProgressBar>,
    overall: Option<ProgressBar>,
    plain: bool,
    /// Bytes reported to the overall bar so far (a restart takes them back).
    counted: AtomicU64,
}

impl Reporter for FileBar {
    /// The file now holds `done` bytes (of `total`, when newly known).
    fn progress(&self, done: u64, total: Option<u64>) {
        if let Some(b) = &self.bar {
            if let Some(t) = total {
                b.set_length(t);
            }
            b.set_position(done);
        }
        let counted = self.counted.swap(done, Ordering::Relaxed);
        if let Some(o) = &self.overall {
            if done >= counted {
                o.inc(done - counted);
            } else {
                o.set_position(o.position().saturating_sub(counted - done));
            }
        }
    }

    /// A retry, resume or restart worth telling about.
    fn note(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(format!("{}: {msg}", self.name)),
            None if self.plain => eprintln!("fetch: {}: {msg}", self.name),
            None => {}
        }
    }

    fn finish(&self, ok: bool, how: &str) {
        match (&self.bar, ok) {
            (Some(b), true) => b.finish_with_message(format!("{} {how}", self.name)),
            (Some(b), false) => b.abandon_with_message(format!("{} {how}", self.name)),
            (None, true) if self.plain => eprintln!("fetch: {} {how}", self.name),
            (None, _) => {}
        }
    }
}

/// `khotfix run` progress: an overall bar plus one spinner per running job
/// showing its current stage (bars), `khotfix: <job>: <stage> ...` lines
/// (lines, for CI logs), or nothing.
pub struct RunDisplay {
    mode: ProgressMode,
    multi: Option<MultiProgress>,
    overall: Mutex<Option<ProgressBar>>,
}

impl RunDisplay {
    pub fn new(mode: ProgressMode) -> RunDisplay {
        RunDisplay {
            mode,
            multi: (mode == ProgressMode::Bars)
                .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            overall: Mutex::new(None),
        }
    }

    fn overall(&self) -> Option<ProgressBar> {
        self.overall.lock().ok().and_then(|o| o.clone())
    }
}

/// A line above the bars, or on stderr.
fn run_line(mode: ProgressMode, multi: &Option<MultiProgress>, s: &str) {
    match (mode, multi) {
        (ProgressMode::Bars, Some(m)) => {
            let _ = m.println(s);
        }
        (ProgressMode::Lines, _) => eprintln!("khotfix: {s}"),
        _ => {}
    }
}

impl Reporter for RunDisplay {
    /// The overall bar's message (a run-wide step such as "publish").
    fn status(&self, msg: &str) {
        if let Some(o) = self.overall() {
            o.set_message(msg.to_string());
        }
    }

    fn event(&self, msg: &str) {
        if self.mode == ProgressMode::Lines {
            run_line(self.mode, &self.multi, msg);
        }
    }

    fn note(&self, msg: &str) {
        run_line(self.mode, &self.multi, msg);
    }

    /// Jobs done of the plan's total: the overall bar, made on first use.
    fn progress(&self, done: u64, total: Option<u64>) {
        let Some(m) = &self.multi else { return };
        let Ok(mut overall) = self.overall.lock() else {
            return;
        };
        let bar = overall.get_or_insert_with(|| {
            let bar = m.add(ProgressBar::new(total.unwrap_or(0)));
            bar.set_style(bar_style(
                "{elapsed_precise} [{bar:30}] {pos}/{len} jobs {msg}",
            ));
            bar
        });
        if let Some(t) = total {
            bar.set_length(t);
        }
        bar.set_position(done);
    }

    fn child(&self, job: &str, _total: Option<u64>) -> Box<dyn Reporter> {
        let spinner = self.multi.as_ref().map(|m| {
            let b = m.add(ProgressBar::new_spinner());
            b.set_style(
                ProgressStyle::with_template("  {spinner} {prefix}: {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix(job.to_string());
            b.enable_steady_tick(std::time::Duration::from_millis(200));
            b
        });
        Box::new(JobLine {
            job: job.to_string(),
            mode: self.mode,
            multi: self.multi.clone(),
            spinner,
        })
    }

    fn finish(&self, _ok: bool, _msg: &str) {
        if let Some(o) = self.overall.lock().ok().and_then(|mut o| o.take()) {
            o.finish_and_clear();
        }
    }
}

/// One running job of a [`RunDisplay`].
struct JobLine {
    job: String,
    mode: ProgressMode,
    multi: Option<MultiProgress>,
    spinner: Option<ProgressBar>,
}

impl Reporter for JobLine {
    fn status(&self, msg: &str) {
        if let Some(b) = &self.spinner {
            b.set_message(msg.to_string());
        }
    }

    fn event(&self, msg: &str) {
        if self.mode == ProgressMode::Lines {
            run_line(self.mode, &self.multi, &format!("{}: {msg}", self.job));
        }
    }

    fn note(&self, msg: &str) {
        run_line(self.mode, &self.multi, &format!("{}: {msg}", self.job));
    }

    fn finish(&self, _ok: bool, _msg: &str) {
        if let Some(b) = &self.spinner {
            b.finish_and_clear();
            if let Some(m) = &self.multi {
                m.remove(b);
            }
        }
    }
}

/// A counting bar for long library steps (publish reading RPM headers),
/// shown only on a terminal.
pub struct CountDisplay {
    bars: bool,
}

impl CountDisplay {
    pub fn new(mode: ProgressMode) -> CountDisplay {
        CountDisplay {
            bars: mode == ProgressMode::Bars,
        }
    }
}

impl Reporter for CountDisplay {
    fn child(&self, name: &str, total: Option<u64>) -> Box<dyn Reporter> {
        if !self.bars {
            return Box::new(khotfix::progress::Quiet);
        }
        let bar = ProgressBar::new(total.unwrap_or(0));
        bar.set_message(name.to_string());
        Box::new(CountBar { bar })
    }
}

struct CountBar {
    bar: ProgressBar,
}

impl Reporter for CountBar {
    fn progress(&self, done: u64, total: Option<u64>) {
        if let Some(t) = total {
            self.bar.set_length(t);
        }
        // Reader threads report out of order: never go back.
        self.bar.set_position(done.max(self.bar.position()));
    }

    fn finish(&self, _ok: bool, _msg: &str) {
        self.bar.finish_and_clear();
    }
}
