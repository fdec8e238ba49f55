//! Download progress: an indicatif MultiProgress (one bar per file and an
//! overall bar) when stderr is a terminal, plain lines when it is not, nothing
//! with `--quiet`.

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bars when stderr is a TTY, otherwise plain lines.
    Auto,
    /// One line per started/finished file on stderr.
    Plain,
    Quiet,
}

/// Shared progress display for one fetch.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    bars: Option<MultiProgress>,
    overall: Option<ProgressBar>,
    plain: bool,
}

impl Progress {
    pub fn new(mode: Mode) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let (bars, plain) = match mode {
            Mode::Quiet => (false, false),
            Mode::Plain => (false, true),
            Mode::Auto if tty => (true, false),
            Mode::Auto => (false, true),
        };
        let bars = bars.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress {
            inner: Arc::new(Inner {
                bars,
                overall: None,
                plain,
            }),
        }
    }

    /// A progress display that prints nothing.
    pub fn quiet() -> Progress {
        Progress::new(Mode::Quiet)
    }

    /// Add the overall bar for `files` files totalling `bytes`.
    pub fn with_overall(self, files: usize, bytes: u64) -> Progress {
        let Some(mp) = &self.inner.bars else {
            return self;
        };
        let bar = mp.add(ProgressBar::new(bytes));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{files} files"));
        Progress {
            inner: Arc::new(Inner {
                bars: Some(mp.clone()),
                overall: Some(bar),
                plain: false,
            }),
        }
    }

    /// A bar (or plain line) for one file.
    pub fn file(&self, name: &str, size: Option<u64>) -> FileProgress {
        if self.inner.plain {
            match size {
                Some(s) => eprintln!("fetch: {name} ({})", HumanBytes(s)),
                None => eprintln!("fetch: {name}"),
            }
        }
        let bar = self.inner.bars.as_ref().map(|mp| {
            let bar = ProgressBar::new(size.unwrap_or(0));
            let bar = match &self.inner.overall {
                Some(o) => mp.insert_before(o, bar),
                None => mp.add(bar),
            };
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:40!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(name.to_string());
            bar
        });
        FileProgress {
            name: name.to_string(),
            bar,
            overall: self.inner.overall.clone(),
            plain: self.inner.plain,
            counted: 0,
        }
    }

    /// A free-form status line (plain mode) or a message above the bars.
    pub fn note(&self, msg: &str) {
        if let Some(mp) = &self.inner.bars {
            let _ = mp.println(msg);
        } else if self.inner.plain {
            eprintln!("{msg}");
        }
    }

    pub fn finish(&self) {
        if let Some(o) = &self.inner.overall {
            o.finish();
        }
    }
}

/// Progress of one file.
pub struct FileProgress {
    name: String,
    bar: Option<ProgressBar>,
    overall: Option<ProgressBar>,
    plain: bool,
    /// Bytes reported to the overall bar so far (a restart takes them back).
    counted: u64,
}

impl FileProgress {
    /// The file now holds `pos` bytes.
    pub fn set_position(&mut self, pos: u64) {
        if let Some(b) = &self.bar {
            b.set_position(pos);
        }
        if let Some(o) = &self.overall {
            if pos >= self.counted {
                o.inc(pos - self.counted);
            } else {
                o.set_position(o.position().saturating_sub(self.counted - pos));
            }
        }
        self.counted = pos;
    }

    pub fn set_length(&self, len: u64) {
        if let Some(b) = &self.bar {
            b.set_length(len);
        }
    }

    /// A retry, resume or restart worth telling about.
    pub fn note(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(format!("{}: {msg}", self.name)),
            None if self.plain => eprintln!("fetch: {}: {msg}", self.name),
            None => {}
        }
    }

    pub fn done(self, how: &str) {
        if let Some(b) = &self.bar {
            b.finish_with_message(format!("{} {how}", self.name));
        } else if self.plain {
            eprintln!("fetch: {} {how}", self.name);
        }
    }

    pub fn failed(self) {
        if let Some(b) = &self.bar {
            b.abandon_with_message(format!("{} FAILED", self.name));
        }
    }
}
