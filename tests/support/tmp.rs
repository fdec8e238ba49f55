//! Scratch directories that live as long as the test process: fixtures
//! built once (modules, keys) are shared by every test of a binary, so they
//! cannot live in one test's `TempDir`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A temp dir that lives for the whole test process.
pub fn scratch() -> &'static Path {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("khotfix-sign-test-")
            .tempdir()
            .unwrap()
            .keep()
    })
}

/// A name part unique within the test process.
pub fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A new directory under `scratch()`.
pub fn tmpdir() -> PathBuf {
    let d = scratch().join(format!("t-{}", rand_suffix()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
