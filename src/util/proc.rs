//! One way to run an external tool, in the manner of cargo's
//! `ProcessBuilder`/`ProcessError`.
//!
//! khotfix drives many tools (rpm, dpkg-deb, patch, openssl, modinfo, qemu,
//! podman, mmdebstrap…). When each call site spawned its own `Command` and
//! formatted its own failure, the messages drifted: some named the command,
//! some dropped stderr, some reported "exit status: 1" and nothing else. Here
//! a [`ProcessBuilder`] describes the call (program, arguments, environment,
//! working directory, stdin) and every failure is one [`ProcessError`] that
//! names the command as a user could re-run it and carries the tail of its
//! stderr.
//!
//! Secrets never travel in argv (the project's rule); the rendered command
//! shows program and arguments only, never the environment or stdin.
//!
//! Callers that must stream a child (qemu's console, the container engine's
//! log, `dpkg-deb --fsys-tarfile` piped into a reader) take the prepared
//! [`std::process::Command`] from [`ProcessBuilder::command`] and report a
//! non-zero exit with [`ProcessBuilder::failure`], so their errors read the
//! same as everyone else's.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};

/// How much of a failed command's stderr an error carries.
const STDERR_TAIL_LINES: usize = 12;
const STDERR_TAIL_BYTES: usize = 2048;

/// A command to run: program, arguments, environment changes, working
/// directory and optional stdin bytes.
#[derive(Debug, Clone)]
pub struct ProcessBuilder {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
}

/// Why running a command did not give a successful result.
#[derive(Debug)]
pub struct ProcessError {
    /// The command as a user could re-run it (program and arguments).
    pub command: String,
    pub kind: ProcessErrorKind,
}

#[derive(Debug)]
pub enum ProcessErrorKind {
    /// The program is not installed (not on PATH, or the path does not exist).
    NotFound,
    /// The program exists but could not be started or waited for.
    Io(io::Error),
    /// It ran and exited unsuccessfully.
    Failed {
        status: ExitStatus,
        /// Last lines of stderr (or of stdout when stderr was empty).
        output_tail: String,
    },
}

impl ProcessBuilder {
    pub fn new(program: impl AsRef<OsStr>) -> ProcessBuilder {
        ProcessBuilder {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            stdin: None,
        }
    }

    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut ProcessBuilder {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut ProcessBuilder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(&mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> &mut ProcessBuilder {
        self.env
            .push((key.as_ref().to_owned(), Some(val.as_ref().to_owned())));
        self
    }

    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut ProcessBuilder {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    pub fn cwd(&mut self, dir: impl AsRef<Path>) -> &mut ProcessBuilder {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Bytes written to the child's stdin (otherwise stdin is null).
    pub fn stdin(&mut self, bytes: impl Into<Vec<u8>>) -> &mut ProcessBuilder {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn get_program(&self) -> &OsStr {
        &self.program
    }

    pub fn get_args(&self) -> &[OsString] {
        &self.args
    }

    /// The `std` command with program, arguments, environment and directory
    /// applied; stdio is left to the caller. For streaming callers.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(d) = &self.cwd {
            c.current_dir(d);
        }
        c
    }

    /// Run with stdout and stderr captured; an unsuccessful exit is an error.
    pub fn output(&self) -> Result<Output, ProcessError> {
        let out = self.output_unchecked()?;
        if !out.status.success() {
            return Err(self.failure(out.status, &out.stderr, &out.stdout));
        }
        Ok(out)
    }

    /// Run with stdout and stderr captured; only failing to start is an
    /// error (for tools whose exit code is an answer, like `rpm -K`).
    pub fn output_unchecked(&self) -> Result<Output, ProcessError> {
        let mut c = self.command();
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = c.spawn().map_err(|e| self.spawn_error(e))?;
        // Feed stdin from a thread so a child that writes a lot before
        // reading cannot deadlock against us.
        let feeder = match (child.stdin.take(), self.stdin.clone()) {
            (Some(mut pipe), Some(bytes)) => Some(std::thread::spawn(move || {
                // A child that exits without reading all of stdin is not our
                // error; its exit status says what happened.
                let _ = pipe.write_all(&bytes);
            })),
            _ => None,
        };
        let out = child.wait_with_output().map_err(|e| self.io_error(e))?;
        if let Some(f) = feeder {
            let _ = f.join();
        }
        Ok(out)
    }

    /// Run with stdout captured and returned as (lossy) UTF-8, trimmed.
    pub fn stdout_string(&self) -> Result<String, ProcessError> {
        let out = self.output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Run with all output discarded and return the exit status (for probes
    /// such as "is shellcheck installed").
    pub fn status_quiet(&self) -> Result<ExitStatus, ProcessError> {
        let mut c = self.command();
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.status().map_err(|e| self.spawn_error(e))
    }

    /// The error for an unsuccessful exit of this command, for callers that
    /// spawned [`ProcessBuilder::command`] themselves.
    pub fn failure(&self, status: ExitStatus, stderr: &[u8], stdout: &[u8]) -> ProcessError {
        let source = if stderr.iter().all(u8::is_ascii_whitespace) {
            stdout
        } else {
            stderr
        };
        ProcessError {
            command: self.to_string(),
            kind: ProcessErrorKind::Failed {
                status,
                output_tail: tail(source),
            },
        }
    }

    /// The error for failing to start this command.
    pub fn spawn_error(&self, e: io::Error) -> ProcessError {
        let kind = if e.kind() == io::ErrorKind::NotFound {
            ProcessErrorKind::NotFound
        } else {
            ProcessErrorKind::Io(e)
        };
        ProcessError {
            command: self.to_string(),
            kind,
        }
    }

    /// The error for an I/O failure while waiting for this command.
    pub fn io_error(&self, e: io::Error) -> ProcessError {
        ProcessError {
            command: self.to_string(),
            kind: ProcessErrorKind::Io(e),
        }
    }
}

/// Shorthand for `ProcessBuilder::new(program)`.
pub fn process(program: impl AsRef<OsStr>) -> ProcessBuilder {
    ProcessBuilder::new(program)
}

impl fmt::Display for ProcessBuilder {
    /// Program and arguments, each shell-quoted when it needs to be.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&quote(&self.program))?;
        for a in &self.args {
            write!(f, " {}", quote(a))?;
        }
        Ok(())
    }
}

impl ProcessError {
    /// The program was not found (callers with an optional tool use this).
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, ProcessErrorKind::NotFound)
    }

    /// The exit status, if the command ran.
    pub fn status(&self) -> Option<ExitStatus> {
        match &self.kind {
            ProcessErrorKind::Failed { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ProcessErrorKind::NotFound => {
                write!(
                    f,
                    "`{}`: program not found (is it installed?)",
                    self.command
                )
            }
            ProcessErrorKind::Io(e) => write!(f, "running `{}`: {e}", self.command),
            ProcessErrorKind::Failed {
                status,
                output_tail,
            } => {
                write!(f, "`{}` failed ({status})", self.command)?;
                if !output_tail.is_empty() {
                    write!(f, ": {output_tail}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ProcessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ProcessErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// The last lines of a tool's output, bounded, with control characters
/// (other than newlines) replaced so a hostile tool output cannot repaint
/// the terminal.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let start = lines.len().saturating_sub(STDERR_TAIL_LINES);
    let mut s = lines[start..].join("\n");
    if s.len() > STDERR_TAIL_BYTES {
        let mut cut = s.len() - STDERR_TAIL_BYTES;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        s = format!("…{}", &s[cut..]);
    }
    s.chars()
        .map(|c| if c.is_control() && c != '\n' { '?' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// Quote one word for display the way a POSIX shell would read it back.
fn quote(word: &OsStr) -> String {
    let s = word.to_string_lossy();
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_names_command_and_stderr_tail() {
        let e = process("sh")
            .args(["-c", "echo one >&2; echo two >&2; exit 3"])
            .output()
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("`sh -c 'echo one >&2; echo two >&2; exit 3'` failed"),
            "{msg}"
        );
        assert!(msg.contains("exit status: 3"), "{msg}");
        assert!(msg.ends_with("one\ntwo"), "{msg}");
        assert_eq!(e.status().and_then(|s| s.code()), Some(3));
    }

    #[test]
    fn missing_program_is_not_found() {
        let e = process("khotfix-no-such-tool").output().unwrap_err();
        assert!(e.is_not_found());
        assert!(e.to_string().contains("program not found"), "{e}");
    }

    #[test]
    fn stdin_env_and_cwd_reach_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let out = process("sh")
            .args(["-c", "cat; printf ' %s ' \"$KHOTFIX_T\"; pwd"])
            .env("KHOTFIX_T", "v")
            .cwd(dir.path())
            .stdin("in")
            .stdout_string()
            .unwrap();
        let canon = dir.path().canonicalize().unwrap();
        assert_eq!(out, format!("in v {}", canon.display()));
    }

    #[test]
    fn large_stdin_does_not_deadlock() {
        let big = vec![b'x'; 4 << 20];
        let out = process("cat").stdin(big.clone()).output().unwrap();
        assert_eq!(out.stdout.len(), big.len());
    }

    #[test]
    fn tail_is_bounded_and_control_free() {
        let many: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let t = tail(many.as_bytes());
        assert_eq!(t.lines().count(), STDERR_TAIL_LINES);
        assert!(t.ends_with("line 99"));
        assert_eq!(tail(b"\x1b[2Jboom"), "?[2Jboom");
        assert!(tail(&vec![b'a'; 10_000]).len() <= STDERR_TAIL_BYTES + 4);
    }

    #[test]
    fn display_quotes_what_needs_it() {
        let mut p = process("rpm");
        p.args(["-K", "a b.rpm", "it's"]);
        assert_eq!(p.to_string(), r"rpm -K 'a b.rpm' 'it'\''s'");
    }
}
