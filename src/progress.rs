//! Progress reporting: library code tells a [`Reporter`] what it is doing;
//! the binary decides how that looks (indicatif bars on a terminal, one line
//! per event in logs, nothing). Why a trait: the library never depends on a
//! display crate, every long-running function takes the same `&dyn Reporter`,
//! and tests pass [`Quiet`] (or a recording reporter) instead of a terminal.

/// How progress is shown; the binary turns it into a [`Reporter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Bars and spinners (stderr is a terminal).
    Bars,
    /// One line per event (logs, CI).
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

/// Where a task reports its progress. Every method has a do-nothing default,
/// so a display implements only what it shows.
pub trait Reporter: Send + Sync {
    /// What the task is doing now, replacing the previous status (a bar's or
    /// spinner's message). Line displays show [`Reporter::event`] instead.
    fn status(&self, _msg: &str) {}
    /// A line for line-by-line displays only (a log of events); a bar
    /// display shows the status instead.
    fn event(&self, _msg: &str) {}
    /// A line worth keeping in every display: a retry, a result, a failure.
    fn note(&self, _msg: &str) {}
    /// How far the task is: `done` units (bytes, jobs) of `total`, when known.
    fn progress(&self, _done: u64, _total: Option<u64>) {}
    /// A sub-task (one file, one job) with its own status and progress;
    /// `total` is its size when known.
    fn child(&self, _name: &str, _total: Option<u64>) -> Box<dyn Reporter> {
        Box::new(Quiet)
    }
    /// The task ended; `ok` says whether it succeeded and `msg` how ("ok",
    /// "cached", "built in 12s", "FAILED").
    fn finish(&self, _ok: bool, _msg: &str) {}
}

/// A reporter that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Reporter for Quiet {}

/// A reporter shared by options structs and threads (`Clone`, `Debug`,
/// [`Quiet`] by default).
#[derive(Clone)]
pub struct SharedReporter(pub std::sync::Arc<dyn Reporter>);

impl SharedReporter {
    pub fn new(r: impl Reporter + 'static) -> SharedReporter {
        SharedReporter(std::sync::Arc::new(r))
    }
}

impl Default for SharedReporter {
    fn default() -> Self {
        SharedReporter::new(Quiet)
    }
}

impl std::fmt::Debug for SharedReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedReporter")
    }
}

impl AsRef<dyn Reporter> for SharedReporter {
    fn as_ref(&self) -> &(dyn Reporter + 'static) {
        self.0.as_ref()
    }
}
