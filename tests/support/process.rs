//! Running the real tools the tests drive, with failures that name the
//! command and show its output (a bare `unwrap` on a failed rpmbuild says
//! nothing useful).

use std::process::{Command, Output};

/// Run `cmd`; panic (naming it) only if it cannot be spawned.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"))
}

/// Run `cmd` and require success; panic with its status, stdout and stderr.
pub fn ok(cmd: &mut Command) -> Output {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run `cmd`, require success, return its stdout.
pub fn run(cmd: &mut Command) -> String {
    text(&ok(cmd).stdout)
}

/// Bytes as text, invalid UTF-8 replaced.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
