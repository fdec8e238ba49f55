//! One abstraction over podman and docker, in the manner of cross-rs: the
//! engine is auto-detected (podman, then docker) or named by config/env, and
//! every invocation carries the configured global options (`--runtime runc`)
//! and run options (`--ulimit ...`).
//!
//! [`Engine::run`] runs one build step in a throw-away container: `--rm`, a
//! unique name, bind mounts, user mapping so outputs are not root-owned on
//! the host, a timeout, output streamed to a log file with the last line shown
//! on a spinner, and a clean `stop` of the container on Ctrl-C or timeout.
//! The engine client runs in its own process group so a terminal Ctrl-C
//! reaches khotfix (which stops the container by name) rather than racing it.

use crate::config::Config;
use crate::progress::Reporter;
use crate::util::proc::{process, ProcessBuilder};
use anyhow::{anyhow, bail, Context, Result};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Which engine CLI we drive (their run/build/inspect syntax is the same for
/// what we use; user mapping differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Podman,
    Docker,
}

/// A configured container engine.
#[derive(Debug, Clone)]
pub struct Engine {
    pub kind: EngineKind,
    /// Program name or path.
    pub program: String,
    /// Options before the subcommand (`--runtime runc`).
    pub global_options: Vec<String>,
    /// Extra `run` options (`--ulimit nofile=1024:1024`).
    pub run_options: Vec<String>,
    /// Extra `build` options.
    pub build_options: Vec<String>,
    /// Where image ids are remembered between runs (see [`super::memo`]);
    /// `None` asks the engine every time.
    pub memo: Option<crate::util::memo::Memo>,
}

/// Why a container run did not finish by itself.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("container {name} timed out after {}s and was stopped (log: {})", after.as_secs(), log.display())]
    Timeout {
        name: String,
        after: Duration,
        log: PathBuf,
    },
    #[error("interrupted: container {name} was stopped (log: {})", log.display())]
    Interrupted { name: String, log: PathBuf },
}

/// A bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host: PathBuf,
    pub container: PathBuf,
    pub read_only: bool,
}

impl Mount {
    pub fn ro(host: impl Into<PathBuf>, container: impl Into<PathBuf>) -> Mount {
        Mount {
            host: host.into(),
            container: container.into(),
            read_only: true,
        }
    }
    pub fn rw(host: impl Into<PathBuf>, container: impl Into<PathBuf>) -> Mount {
        Mount {
            host: host.into(),
            container: container.into(),
            read_only: false,
        }
    }

    /// `-v` argument; refuses paths the syntax cannot carry.
    fn arg(&self) -> Result<String> {
        let (h, c) = (self.host.to_str(), self.container.to_str());
        let (Some(h), Some(c)) = (h, c) else {
            bail!("mount path {} is not UTF-8", self.host.display())
        };
        for p in [h, c] {
            if !p.starts_with('/') || p.contains([':', ',', '\n', '\0']) {
                bail!("mount path {p:?} must be absolute and free of ':' ',' and newlines");
            }
        }
        Ok(format!(
            "{h}:{c}{}",
            if self.read_only { ":ro" } else { "" }
        ))
    }
}

/// One container run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub image: String,
    /// Prefix of the unique container name (`khotfix-<prefix>-<pid>-<rand>`).
    pub name_prefix: String,
    pub mounts: Vec<Mount>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<PathBuf>,
    pub command: Vec<String>,
    pub timeout: Option<Duration>,
    /// Host directories the container writes; their contents are given back
    /// to the directory's owner after the run when we run as root.
    pub output_dirs: Vec<PathBuf>,
    /// Whole output (stdout+stderr) goes here.
    pub log: PathBuf,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub name: String,
    pub exit_code: i32,
    pub duration: Duration,
}

impl Engine {
    /// The engine named by config/env, or the first of podman, docker on PATH.
    pub fn from_config(c: &Config) -> Result<Engine> {
        let program = match &c.engine {
            Some(e) => {
                if which(e).is_none() {
                    bail!(
                        "container engine {e:?} not found (set by {} or the config file)",
                        crate::config::env::ENGINE
                    );
                }
                e.clone()
            }
            None => ["podman", "docker"]
                .into_iter()
                .find(|p| which(p).is_some())
                .map(str::to_string)
                .ok_or_else(|| {
                    anyhow!(
                        "no container engine found: install podman or docker, or set {}",
                        crate::config::env::ENGINE
                    )
                })?,
        };
        let base = Path::new(&program)
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or(&program);
        let kind = if base.contains("docker") {
            EngineKind::Docker
        } else {
            EngineKind::Podman
        };
        Ok(Engine {
            kind,
            program,
            global_options: c.engine_options.clone(),
            run_options: c.run_options.clone(),
            build_options: c.build_options.clone(),
            memo: Some(crate::util::memo::Memo::new(c.cache_dir.join("memo"))),
        })
    }

    /// `<program> <global options> <args>`.
    pub fn command<I, S>(&self, args: I) -> ProcessBuilder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut p = process(&self.program);
        p.args(&self.global_options).args(args);
        p
    }

    /// Run a short engine command and return its stdout, or an error with its stderr.
    fn capture(&self, args: &[&str]) -> Result<String> {
        Ok(self.command(args).stdout_string()?)
    }

    /// The image's id, or `None` if the engine has no such image.
    /// Remembered while the engine's image index is unchanged, so a build
    /// served from the cache does not start the engine client.
    pub fn image_id(&self, image: &str) -> Result<Option<String>> {
        let Some(memo) = &self.memo else {
            return self.inspect_image_id(image);
        };
        let query = super::memo::image_query(self, image);
        if let Some(id) = memo.get(&query) {
            return Ok(Some(id));
        }
        let witnesses = super::memo::engine_witnesses(self);
        let id = self.inspect_image_id(image)?;
        if let (Some(id), Some(w)) = (&id, witnesses) {
            memo.put(&query, w, id);
        }
        Ok(id)
    }

    fn inspect_image_id(&self, image: &str) -> Result<Option<String>> {
        let out = self
            .command(["image", "inspect", "--format", "{{.Id}}", image])
            .output_unchecked()?;
        if !out.status.success() {
            return Ok(None);
        }
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok((!id.is_empty()).then_some(id))
    }

    /// Remove an image unless a container uses it (errors are ignored:
    /// "no such image", "in use").
    pub fn remove_image(&self, image: &str) -> Result<()> {
        self.command(["rmi", image]).status_quiet()?;
        Ok(())
    }

    /// `import` a root file system tarball as `tag`.
    pub fn import(&self, tarball: &Path, tag: &str, log: &Path) -> Result<()> {
        let args: Vec<OsString> = vec!["import".into(), tarball.into(), tag.into()];
        let code = supervise(
            self.command(args),
            log,
            &crate::progress::Quiet,
            None,
            || {},
        )
        .map_err(|e| anyhow::Error::from(e).context(format!("importing {}", tarball.display())))?;
        if code != 0 {
            bail!(
                "{} import {} failed (exit {code}); see {}",
                self.program,
                tarball.display(),
                log.display()
            );
        }
        Ok(())
    }

    /// Build `tag` from `containerfile` in `context`.
    pub fn build_image(
        &self,
        context: &Path,
        containerfile: &Path,
        tag: &str,
        build_args: &[(String, String)],
        log: &Path,
        progress: &dyn Reporter,
    ) -> Result<()> {
        let mut args: Vec<OsString> = vec!["build".into()];
        args.extend(self.build_options.iter().map(OsString::from));
        args.extend(["-f".into(), containerfile.into(), "-t".into(), tag.into()]);
        for (k, v) in build_args {
            args.push("--build-arg".into());
            args.push(format!("{k}={v}").into());
        }
        args.push(context.into());
        let code = supervise(self.command(args), log, progress, None, || {})?;
        if code != 0 {
            bail!(
                "building image {tag} from {} failed (exit {code}); see {}",
                containerfile.display(),
                log.display()
            );
        }
        Ok(())
    }

    /// User mapping so files written to mounts belong to the invoking user:
    /// rootless podman maps our uid with keep-id; docker runs as our uid; as
    /// root there is nothing to map (outputs are chowned after the run).
    pub fn user_args(&self) -> Vec<String> {
        // SAFETY: geteuid/getegid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        if uid == 0 {
            return vec![];
        }
        match self.kind {
            EngineKind::Podman => vec!["--userns=keep-id".into()],
            EngineKind::Docker => vec!["--user".into(), format!("{uid}:{gid}")],
        }
    }

    /// The full argument list of `run` (after the global options).
    pub fn run_args(&self, spec: &RunSpec, name: &str) -> Result<Vec<String>> {
        let mut a: Vec<String> = vec![
            "run".into(),
            "--rm".into(),
            "--name".into(),
            name.into(),
            "--network".into(),
            "none".into(),
            // Output reaches us through the attached stdout/stderr (and our
            // log file); the engine's own copy is never read, and writing
            // it costs every build.
            "--log-driver".into(),
            "none".into(),
        ];
        a.extend(self.run_options.iter().cloned());
        a.extend(self.user_args());
        for m in &spec.mounts {
            a.push("-v".into());
            a.push(m.arg()?);
        }
        for (k, v) in &spec.env {
            if k.is_empty()
                || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || v.contains('\0')
            {
                bail!("bad container environment variable {k:?}");
            }
            a.push("-e".into());
            a.push(format!("{k}={v}"));
        }
        if let Some(w) = &spec.workdir {
            a.push("-w".into());
            a.push(
                w.to_str()
                    .ok_or_else(|| anyhow!("workdir {} is not UTF-8", w.display()))?
                    .into(),
            );
        }
        a.push(spec.image.clone());
        a.extend(spec.command.iter().cloned());
        Ok(a)
    }

    /// Run a container to completion (see the module docs). An `Err` that
    /// downcasts to [`RunError`] means it was stopped (timeout or Ctrl-C).
    pub fn run(&self, spec: &RunSpec, progress: &dyn Reporter) -> Result<RunOutcome> {
        let name = unique_name(&spec.name_prefix);
        let args = self.run_args(spec, &name)?;
        let started = Instant::now();
        let stop = || self.stop(&name);
        let result = supervise(self.command(&args), &spec.log, progress, spec.timeout, stop);
        for d in &spec.output_dirs {
            give_back(d).with_context(|| format!("restoring ownership under {}", d.display()))?;
        }
        match result {
            Ok(exit_code) => Ok(RunOutcome {
                name,
                exit_code,
                duration: started.elapsed(),
            }),
            Err(Abort::Timeout(after)) => Err(RunError::Timeout {
                name,
                after,
                log: spec.log.clone(),
            }
            .into()),
            Err(Abort::Interrupted) => Err(RunError::Interrupted {
                name,
                log: spec.log.clone(),
            }
            .into()),
            Err(Abort::Other(e)) => Err(e),
        }
    }

    /// Stop (then force-remove) a container by name; errors are ignored
    /// because the container may already be gone.
    pub fn stop(&self, name: &str) {
        let _ = self.command(["stop", "-t", "5", name]).status_quiet();
        let _ = self.command(["rm", "-f", name]).status_quiet();
    }

    /// Does a container with exactly this name exist (running or not)?
    pub fn container_exists(&self, name: &str) -> Result<bool> {
        let out = self.capture(&["ps", "-a", "--format", "{{.Names}}"])?;
        Ok(out.lines().any(|l| l.trim() == name))
    }

    /// Names of all containers whose name starts with `prefix`.
    pub fn containers_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let out = self.capture(&["ps", "-a", "--format", "{{.Names}}"])?;
        Ok(out
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string)
            .collect())
    }
}

/// `khotfix-<prefix>-<pid>-<random>`; the prefix is reduced to `[a-z0-9_.-]`.
pub fn unique_name(prefix: &str) -> String {
    let clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(80)
        .collect();
    format!(
        "khotfix-{}-{}-{:08x}",
        clean.trim_matches('-'),
        std::process::id(),
        rand::random::<u32>()
    )
}

fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

// ---- Ctrl-C ----------------------------------------------------------------

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static ACTIVE: Mutex<usize> = Mutex::new(0);

extern "C" fn on_signal(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// While alive, SIGINT/SIGTERM set a flag instead of killing the process, so
/// running containers can be stopped by name. The default disposition comes
/// back when the last guard is dropped.
pub struct SignalGuard(());

static PREVIOUS: Mutex<Option<(libc::sighandler_t, libc::sighandler_t)>> = Mutex::new(None);

impl SignalGuard {
    pub fn install() -> SignalGuard {
        let mut n = ACTIVE.lock().unwrap_or_else(|p| p.into_inner());
        if *n == 0 {
            let h = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            // SAFETY: the handler only stores to an atomic (async-signal-safe).
            let prev = unsafe {
                (
                    libc::signal(libc::SIGINT, h),
                    libc::signal(libc::SIGTERM, h),
                )
            };
            *PREVIOUS.lock().unwrap_or_else(|p| p.into_inner()) = Some(prev);
        }
        *n += 1;
        SignalGuard(())
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        let mut n = ACTIVE.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        if *n == 0 {
            // Restore what was there before (SIG_IGN under nohup, say).
            let (int, term) = PREVIOUS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or((libc::SIG_DFL, libc::SIG_DFL));
            // SAFETY: restoring a disposition obtained from signal().
            unsafe {
                libc::signal(libc::SIGINT, int);
                libc::signal(libc::SIGTERM, term);
            }
        }
    }
}

/// Has Ctrl-C (SIGINT) or SIGTERM arrived while a [`SignalGuard`] was alive?
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Forget an earlier interrupt (tests; a long-lived caller starting over).
pub fn clear_interrupt() {
    INTERRUPTED.store(false, Ordering::SeqCst);
}

// ---- supervision -------------------------------------------------------------

enum Abort {
    Timeout(Duration),
    Interrupted,
    Other(anyhow::Error),
}

impl From<Abort> for anyhow::Error {
    fn from(a: Abort) -> Self {
        match a {
            Abort::Timeout(d) => anyhow!("timed out after {}s", d.as_secs()),
            Abort::Interrupted => anyhow!("interrupted"),
            Abort::Other(e) => e,
        }
    }
}

/// Run `expr` with stdout+stderr appended to `log`, polling for exit, the
/// timeout and Ctrl-C; on either of the latter call `stop` then reap.
fn supervise(
    cmd: ProcessBuilder,
    log: &Path,
    progress: &dyn Reporter,
    timeout: Option<Duration>,
    stop: impl Fn(),
) -> Result<i32, Abort> {
    let _guard = SignalGuard::install();
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Abort::Other(anyhow!("creating {}: {e}", dir.display())))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Abort::Other(anyhow!("opening log {}: {e}", log.display())))?;
    let _ = writeln!(f, "$ {cmd}");
    let stderr = f
        .try_clone()
        .map_err(|e| Abort::Other(anyhow!("opening log {}: {e}", log.display())))?;
    let mut handle = cmd
        .command()
        .stdin(std::process::Stdio::null())
        .stdout(f)
        .stderr(stderr)
        // Own process group: a terminal Ctrl-C reaches us, not the engine client.
        .process_group(0)
        .spawn()
        .map_err(|e| Abort::Other(cmd.spawn_error(e).into()))?;
    let started = Instant::now();
    let mut last_line = String::new();
    loop {
        match handle.try_wait() {
            Ok(Some(status)) => return Ok(status.code().unwrap_or(128 + status.signal_number())),
            Ok(None) => {}
            Err(e) => {
                return Err(Abort::Other(anyhow!(
                    "waiting for the container engine: {e}"
                )))
            }
        }
        let abort = if interrupted() {
            Some(Abort::Interrupted)
        } else {
            timeout
                .filter(|t| started.elapsed() > *t)
                .map(Abort::Timeout)
        };
        if let Some(a) = abort {
            progress.status("stopping the container…");
            stop();
            // Give the client a moment to exit after the container is gone.
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = handle.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = handle.kill();
            let _ = handle.wait();
            return Err(a);
        }
        if let Some(l) = last_log_line(log) {
            if l != last_line {
                progress.status(&l);
                last_line = l;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

trait SignalNumber {
    fn signal_number(&self) -> i32;
}

impl SignalNumber for std::process::ExitStatus {
    fn signal_number(&self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        self.signal().unwrap_or(0)
    }
}

/// The last non-empty line of a log file (reads only its tail), trimmed to
/// fit a progress line.
pub fn last_log_line(log: &Path) -> Option<String> {
    let mut f = File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    let clean: String = line.chars().filter(|c| !c.is_control()).take(100).collect();
    Some(clean)
}

/// As root, give everything under `dir` to the owner of `dir` (the invoking
/// user created it); a no-op for other users, whose mapping already did it.
pub fn give_back(dir: &Path) -> Result<()> {
    give_back_as(dir, dir, 1)
}

/// As root, give `path` (and, from `min_depth`, everything under it) to the
/// owner of `reference`.
pub fn give_back_as(path: &Path, reference: &Path, min_depth: usize) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 || !path.exists() {
        return Ok(());
    }
    let md = std::fs::metadata(reference)?;
    let (uid, gid) = (md.uid(), md.gid());
    for entry in walkdir::WalkDir::new(path)
        .min_depth(min_depth)
        .follow_links(false)
    {
        let entry = entry?;
        let m = entry.path().symlink_metadata()?;
        if m.uid() != uid || m.gid() != gid {
            std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid))
                .with_context(|| format!("chown {}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_clean() {
        let a = unique_name("22519882-al8/5.10 x");
        let b = unique_name("22519882-al8/5.10 x");
        assert_ne!(a, b);
        assert!(a.starts_with("khotfix-22519882-al8-5.10-x-"), "{a}");
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
    }

    #[test]
    fn mounts_refuse_ambiguous_paths() {
        assert_eq!(Mount::ro("/a", "/b").arg().unwrap(), "/a:/b:ro");
        assert_eq!(Mount::rw("/a", "/b").arg().unwrap(), "/a:/b");
        assert!(Mount::ro("/a:b", "/b").arg().is_err());
        assert!(Mount::ro("rel", "/b").arg().is_err());
    }

    #[test]
    fn run_args_carry_config() {
        let e = Engine {
            kind: EngineKind::Podman,
            program: "podman".into(),
            global_options: vec!["--runtime".into(), "runc".into()],
            run_options: vec!["--ulimit".into(), "nofile=1024:1024".into()],
            build_options: vec![],
            memo: None,
        };
        let spec = RunSpec {
            image: "img".into(),
            name_prefix: "p".into(),
            mounts: vec![Mount::ro("/h", "/c")],
            env: vec![("CACHEDIR".into(), "/cache".into())],
            workdir: Some("/w".into()),
            command: vec!["make".into()],
            timeout: None,
            output_dirs: vec![],
            log: "/tmp/x.log".into(),
        };
        let a = e.run_args(&spec, "n").unwrap();
        assert_eq!(&a[..6], ["run", "--rm", "--name", "n", "--network", "none"]);
        assert!(a.windows(2).any(|w| w == ["--ulimit", "nofile=1024:1024"]));
        assert!(a.windows(2).any(|w| w == ["-v", "/h:/c:ro"]));
        assert!(a.windows(2).any(|w| w == ["-e", "CACHEDIR=/cache"]));
        assert_eq!(&a[a.len() - 2..], ["img", "make"]);
        let bad = RunSpec {
            env: vec![("A B".into(), "x".into())],
            ..spec
        };
        assert!(e.run_args(&bad, "n").is_err());
    }
}
