//! The khotfix binary under test. Cargo gives its path to integration tests
//! only, through `CARGO_BIN_EXE_khotfix`; this is the one place that reads
//! it.

use std::path::Path;
use std::process::{Command, Output};

/// Path of the khotfix binary cargo built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_khotfix");

/// The repository root (recipes/, patches/, tests/data/ live there).
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A command running the khotfix binary, nothing set.
pub fn khotfix() -> Command {
    Command::new(BIN)
}

/// The khotfix binary with no fetch settings inherited from the caller's
/// environment (cache dir, mirrors, HTTP timeouts and limits) and a short
/// retry back-off, so fetch tests see only what they set themselves.
pub fn khotfix_fetch() -> Command {
    let mut c = khotfix();
    for k in [
        "KHOTFIX_CACHE_DIR",
        "KHOTFIX_MIRRORS",
        "KHOTFIX_HTTP_TIMEOUT",
        "KHOTFIX_HTTP_RETRIES",
        "KHOTFIX_HTTP_BACKOFF_MS",
        "KHOTFIX_HTTP_MIN_RATE",
        "KHOTFIX_HTTP_DEADLINE",
        "KHOTFIX_METADATA_MAX_BYTES",
    ] {
        c.env_remove(k);
    }
    c.env("KHOTFIX_HTTP_BACKOFF_MS", "10");
    c
}

/// Exit code, stdout and stderr of a finished khotfix run (panics if it
/// was killed by a signal: no test here expects that).
pub fn code_out_err(out: Output) -> (i32, String, String) {
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `khotfix ARGS` in `cwd`: exit code, stdout, stderr.
pub fn khotfix_in(args: &[&str], cwd: &Path) -> (i32, String, String) {
    code_out_err(khotfix().args(args).current_dir(cwd).output().unwrap())
}
