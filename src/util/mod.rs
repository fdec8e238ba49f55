//! Small helpers every stage shares: validation of values that reach paths,
//! shell scripts or package names; atomic file writes; running external tools
//! (`proc`); process exit codes.

pub mod fsx;
pub mod libcrypto;
pub mod memo;
pub mod proc;
pub mod table;
pub mod validate;
pub mod yaml;
pub mod zlib;

/// Process exit codes, documented in the README.
pub mod exit {
    /// Success (for `node check`: not affected or already fixed).
    pub const OK: i32 = 0;
    /// The command ran but its answer is "no": a job failed, a check found a
    /// mismatch, or (for `node check`) the node needs the hotfix.
    pub const FAILED: i32 = 1;
    /// Bad input or an error: unreadable recipe, bad arguments, I/O failure.
    pub const ERROR: i32 = 2;
    /// `node check`: affected, but this node cannot be hot-fixed.
    pub const UNFIXABLE: i32 = 3;
}
