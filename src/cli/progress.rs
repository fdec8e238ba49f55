//! The terminal side of [`khotfix::progress::Reporter`]: indicatif bars and
//! spinners, or plain lines, chosen by [`ProgressMode`]. Only the binary
//! depends on indicatif; the library reports through the trait.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use khotfix::progress::Reporter;

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
