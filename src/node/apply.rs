//! `khotfix node apply`: act on a `needs-hotfix` verdict.
//!
//! Dry run by default: prints exactly the steps it would take. With `--yes`
//! it installs `kernel-hotfix-<id>-<kver>` with dnf or yum (whichever the host
//! has; through `chroot <root>` when `--root` is not `/`), or loads a given
//! `.ko` with finit_module(2), then waits, like `kpatch load`, until
//! `/sys/kernel/livepatch/<module>/enabled` = 1 and `transition` = 0.
//!
//! A `.ko` is refused before anything is loaded when its vermagic differs from
//! the running kernel (release, and the full string of an in-tree module of
//! that kernel when one is available), or when its name is not the recipe's
//! module.
//!
//! The reference module named by the host's `modules.dep` is found through
//! the root like every host read: an entry with `..` is refused, links are
//! followed only inside the root, and at most [`KO_CAP`] bytes are read (or
//! decompressed).
//!
//! Exit codes: 0 the fix is live (or nothing was needed), 1 dry run of a
//! needed hotfix (nothing done; also when the host has no dnf or yum, which
//! the plan says, as the generated script does), 2 error (install or load
//! failed, module refused, timed out waiting for the transition, `--yes`
//! without dnf or yum), 3 unfixable.

use super::check::{check, live_state, CheckReport, Evidence, LiveState, Verdict};
use super::modinfo;
use super::root::{shown, HostRoot, KO_CAP, MODULES_DEP_HEAD};
use crate::recipe::Recipe;
use crate::util::exit;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How `apply` should act.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Act; without it, only print the plan.
    pub yes: bool,
    /// Load this module instead of installing the package.
    pub ko: Option<PathBuf>,
    /// How long to wait for the livepatch transition.
    pub timeout: Duration,
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Run a package manager: `[chroot ROOT] dnf install -y PKG`.
    Install { argv: Vec<String> },
    /// finit_module(2) on a verified `.ko`.
    Load { path: PathBuf, vermagic: String },
    /// Poll /sys/kernel/livepatch/<module> until enabled=1, transition=0.
    Wait { module: String, timeout_secs: u64 },
    /// Only in a dry run: the install cannot run (no dnf or yum), and why.
    CannotInstall { reason: String },
}

impl Step {
    /// The step as a shell-like line (what the dry run prints).
    pub fn display(&self) -> String {
        use crate::util::validate::sh_quote;
        match self {
            Step::Install { argv } => argv
                .iter()
                .map(|a| sh_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
            Step::Load { path, .. } => format!(
                "insmod {}  # finit_module(2), vermagic checked",
                sh_quote(&path.to_string_lossy())
            ),
            Step::Wait {
                module,
                timeout_secs,
            } => {
                format!("wait up to {timeout_secs}s for /sys/kernel/livepatch/{module}/enabled=1 and transition=0")
            }
            Step::CannotInstall { reason } => reason.clone(),
        }
    }

    /// The dry-run verb for the step: `would run` or `would fail`.
    pub fn would(&self) -> &'static str {
        match self {
            Step::CannotInstall { .. } => "would fail",
            _ => "would run",
        }
    }
}

/// What `apply` decided and did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    /// The check before acting.
    pub before: CheckReport,
    pub steps: Vec<Step>,
    /// Whether the steps were carried out (`--yes`).
    pub acted: bool,
    /// The check after acting.
    pub after: Option<CheckReport>,
    pub exit_code: i32,
    pub message: String,
}

/// Check a `.ko` against the running kernel and the recipe; return its vermagic.
pub fn verify_module(
    ko: &Path,
    root: &HostRoot,
    kernel_release: &str,
    module: &str,
) -> Result<String> {
    let mi = read_modinfo(ko)?;
    let vermagic = mi
        .vermagic()
        .with_context(|| format!("{}: no vermagic in .modinfo", ko.display()))?
        .to_string();
    let built_for = mi.kernel_release().unwrap_or_default();
    if built_for != kernel_release {
        bail!("refusing {}: built for kernel {built_for} (vermagic {:?}) but the running kernel is {kernel_release}", ko.display(), vermagic.trim());
    }
    if let Some(reference) = reference_vermagic(root, kernel_release)? {
        if reference.trim() != vermagic.trim() {
            bail!(
                "refusing {}: vermagic {:?} differs from the running kernel's modules ({:?})",
                ko.display(),
                vermagic.trim(),
                reference.trim()
            );
        }
    }
    match mi.name() {
        Some(n) if n == module => {}
        Some(n) => bail!(
            "refusing {}: it is module {n}, but the recipe's livepatch module is {module}",
            ko.display()
        ),
        None => bail!("refusing {}: no module name in .modinfo", ko.display()),
    }
    if !mi.is_livepatch() {
        bail!(
            "refusing {}: not a livepatch module (no livepatch=Y in .modinfo)",
            ko.display()
        );
    }
    Ok(vermagic)
}

/// The full vermagic of an in-tree module of the running kernel, if the host
/// has its modules tree (the kernel itself does not export its vermagic).
/// `None` when there is no `modules.dep`, no entry, or its module is missing;
/// an error when the entry leaves the modules directory or a read breaks the
/// limits of [`super::root`].
fn reference_vermagic(root: &HostRoot, release: &str) -> Result<Option<String>> {
    let dep_path = format!("/lib/modules/{release}/modules.dep");
    let Some(head) = root.read_head(&dep_path, MODULES_DEP_HEAD)? else {
        return Ok(None);
    };
    let line = match head.iter().position(|&b| b == b'\n') {
        Some(end) => &head[..end],
        None if (head.len() as u64) < MODULES_DEP_HEAD => &head[..],
        None => bail!(
            "{}: first line longer than {MODULES_DEP_HEAD} bytes",
            root.path(&dep_path).display()
        ),
    };
    let entry = line
        .split(|&b| b == b':')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if entry.is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| {
        anyhow::anyhow!(
            "{}: entry {} {why}",
            root.path(&dep_path).display(),
            shown(entry)
        )
    };
    let entry = std::str::from_utf8(entry).map_err(|_| bad("is not UTF-8"))?;
    if entry.split('/').any(|c| c == "..") {
        return Err(bad("leaves the modules directory ('..')"));
    }
    // Old depmod wrote absolute paths: those are host paths.
    let host_path = if entry.starts_with('/') {
        entry.to_string()
    } else {
        format!("/lib/modules/{release}/{entry}")
    };
    let Some(raw) = root.read_capped(&host_path, KO_CAP)? else {
        return Ok(None);
    };
    let shown_path = root.path(&host_path);
    let bytes = decompress_capped(&raw, entry, &shown_path)?;
    let mi = modinfo::parse(&bytes).with_context(|| format!("{}", shown_path.display()))?;
    Ok(mi.vermagic().map(str::to_string))
}

/// The host tool that decompresses a module file, by its name's suffix
/// (kmod's suffixes); `None` for a plain `.ko`. The node agent leaves
/// decompression to the host's own tools, so that `khotfix-node` links no
/// compression library (issue 15); hosts that compress their modules ship
/// the matching tool (kmod's packaging needs it for initramfs builds).
fn decompressor(name: &str) -> Option<&'static str> {
    if name.ends_with(".xz") {
        Some("xz")
    } else if name.ends_with(".zst") {
        Some("zstd")
    } else if name.ends_with(".gz") {
        Some("gzip")
    } else {
        None
    }
}

/// A module file's bytes, decompressed (by its name's suffix, with `xz`,
/// `zstd` or `gzip -d -c`) to at most [`KO_CAP`] bytes: a larger output is
/// refused as soon as it passes the limit.
fn decompress_capped(raw: &[u8], name: &str, path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let Some(tool) = decompressor(name) else {
        return Ok(raw.to_vec());
    };
    let what = || format!("decompressing {}", path.display());
    let mut pb = crate::util::proc::process(tool);
    pb.args(["-d", "-c"]);
    let mut c = pb.command();
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c
        .spawn()
        .map_err(|e| pb.spawn_error(e))
        .with_context(what)?;
    let (mut stdin, stdout, stderr) = (
        child.stdin.take().expect("piped stdin"),
        child.stdout.take().expect("piped stdout"),
        child.stderr.take().expect("piped stderr"),
    );
    let (out, err) = std::thread::scope(|s| {
        // A tool that stops reading (bad data, or killed over the cap) is
        // not an error here; its exit status says what happened.
        s.spawn(move || {
            let _ = stdin.write_all(raw);
        });
        let err = s.spawn(move || {
            let mut e = Vec::new();
            let _ = stderr.take(64 << 10).read_to_end(&mut e);
            e
        });
        let mut out = Vec::new();
        let read = stdout.take(KO_CAP + 1).read_to_end(&mut out);
        if read.is_err() || out.len() as u64 > KO_CAP {
            let _ = child.kill();
        }
        (read.map(|_| out), err.join().unwrap_or_default())
    });
    let status = child
        .wait()
        .map_err(|e| pb.io_error(e))
        .with_context(what)?;
    let out = out.with_context(what)?;
    if out.len() as u64 > KO_CAP {
        bail!(
            "{}: larger than {KO_CAP} bytes decompressed",
            path.display()
        );
    }
    if !status.success() {
        return Err(pb.failure(status, &err, &[])).with_context(what);
    }
    Ok(out)
}

/// The `.modinfo` of a module file given on the command line (`--ko`),
/// read whole (at most [`KO_CAP`] bytes) and decompressed like the host's.
fn read_modinfo(ko: &Path) -> Result<modinfo::ModInfo> {
    use std::io::Read;
    let f = std::fs::File::open(ko).with_context(|| format!("reading {}", ko.display()))?;
    let mut raw = Vec::new();
    f.take(KO_CAP + 1)
        .read_to_end(&mut raw)
        .with_context(|| format!("reading {}", ko.display()))?;
    if raw.len() as u64 > KO_CAP {
        bail!("{}: larger than {KO_CAP} bytes", ko.display());
    }
    let bytes = decompress_capped(&raw, &ko.to_string_lossy(), ko)?;
    modinfo::parse(&bytes).with_context(|| format!("{}", ko.display()))
}

/// Decide the steps for a check result.
pub fn plan(
    recipe: &Recipe,
    root: &HostRoot,
    before: &CheckReport,
    opts: &ApplyOptions,
) -> Result<Vec<Step>> {
    let module = recipe.node.module.clone();
    let wait = Step::Wait {
        module: module.clone(),
        timeout_secs: opts.timeout.as_secs(),
    };
    match before.verdict {
        Verdict::Applying => return Ok(vec![wait]),
        Verdict::NeedsHotfix => {}
        _ => return Ok(vec![]),
    }
    let kernel = before.kernel.clone().unwrap_or_default();
    let first = match &opts.ko {
        Some(ko) => {
            let vermagic = verify_module(ko, root, &kernel, &module)?;
            Step::Load {
                path: ko.clone(),
                vermagic,
            }
        }
        None => {
            let package = before
                .package
                .clone()
                .context("no package name for this kernel")?;
            let pm = match root.which("dnf")? {
                Some(pm) => pm,
                None => match root.which("yum")? {
                    Some(pm) => pm,
                    None => {
                        let reason = format!(
                            "neither dnf nor yum is installed under {}",
                            root.dir().display()
                        );
                        if opts.yes {
                            bail!("{reason}");
                        }
                        return Ok(vec![Step::CannotInstall { reason }, wait]);
                    }
                },
            };
            let mut argv = Vec::new();
            if !root.is_host() {
                argv.push("chroot".to_string());
                argv.push(root.dir().to_string_lossy().into_owned());
            }
            argv.extend([pm, "install".into(), "-y".into(), package]);
            Step::Install { argv }
        }
    };
    Ok(vec![first, wait])
}

fn load_module(path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let empty = c"";
    // SAFETY: finit_module takes a file descriptor we own for the duration of
    // the call, a NUL-terminated parameter string and flags; no memory is
    // shared with the kernel beyond the call.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), empty.as_ptr(), 0) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    let why = match err.raw_os_error() {
        Some(libc::EEXIST) => "a module with this name is already loaded",
        Some(libc::ENOEXEC) => "invalid module format",
        Some(libc::EKEYREJECTED) => "module signature rejected",
        Some(libc::EPERM) => {
            "not permitted (needs CAP_SYS_MODULE; kernel lockdown or modules_disabled?)"
        }
        Some(libc::ENOENT) => "unknown symbol (is the patched module loaded?)",
        _ => "",
    };
    bail!(
        "loading {}: {err}{}{why}",
        path.display(),
        if why.is_empty() { "" } else { ": " }
    )
}

/// Poll the livepatch state until live or the timeout passes.
pub fn wait_live(root: &HostRoot, module: &str, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        let mut ev = Evidence::default();
        let state = live_state(root, module, &mut ev)?;
        if state == LiveState::Live && ev.livepatch_enabled.as_deref() == Some("1") {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            bail!(
                "timed out after {}s waiting for {module}: enabled={}, transition={}",
                timeout.as_secs(),
                ev.livepatch_enabled.as_deref().unwrap_or("missing"),
                ev.livepatch_transition.as_deref().unwrap_or("missing")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_step(step: &Step, root: &HostRoot, log: &mut dyn Write) -> Result<()> {
    writeln!(log, "running: {}", step.display())?;
    match step {
        Step::Install { argv } => {
            let status = std::process::Command::new(&argv[0])
                .args(&argv[1..])
                .stdout(std::process::Stdio::inherit())
                .status()
                .with_context(|| format!("running {}", argv[0]))?;
            if !status.success() {
                bail!(
                    "{} failed ({status}); check the yum repository and permissions",
                    step.display()
                );
            }
        }
        Step::Load { path, .. } => load_module(path)?,
        Step::CannotInstall { reason } => bail!("{reason}"),
        Step::Wait {
            module,
            timeout_secs,
        } => wait_live(root, module, Duration::from_secs(*timeout_secs))?,
    }
    Ok(())
}

/// Check, plan, and (with `yes`) act. Progress goes to `log`; the caller
/// prints the report.
pub fn apply(
    recipe: &Recipe,
    root: &HostRoot,
    opts: &ApplyOptions,
    log: &mut dyn Write,
) -> Result<ApplyReport> {
    let before = check(recipe, root)?;
    let steps = plan(recipe, root, &before, opts)?;
    let mut report = ApplyReport {
        before: before.clone(),
        steps: steps.clone(),
        acted: false,
        after: None,
        exit_code: before.exit_code,
        message: String::new(),
    };
    if steps.is_empty() {
        report.message = format!("nothing to do: {}", before.line());
        return Ok(report);
    }
    if !opts.yes {
        report.message = format!("dry run: {}; run with --yes to apply", before.line());
        return Ok(report);
    }
    report.acted = true;
    for step in &steps {
        if let Err(e) = run_step(step, root, log) {
            report.after = check(recipe, root).ok();
            report.exit_code = exit::ERROR;
            report.message = format!("{e:#}");
            return Ok(report);
        }
    }
    let after = check(recipe, root)?;
    report.exit_code = if after.verdict == Verdict::Fixed {
        exit::OK
    } else {
        exit::ERROR
    };
    report.message = format!("applied: {}", after.line());
    report.after = Some(after);
    Ok(report)
}

#[cfg(test)]
mod decompress_tests {
    use super::*;

    fn compress(tool: &str, data: &[u8]) -> Vec<u8> {
        let mut pb = crate::util::proc::process(tool);
        pb.arg("-c").stdin(data.to_vec());
        pb.output().unwrap().stdout
    }

    #[test]
    fn host_tools_decompress_each_suffix() {
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        for (tool, name) in [("xz", "m.ko.xz"), ("zstd", "m.ko.zst"), ("gzip", "m.ko.gz")] {
            let packed = compress(tool, &data);
            assert_ne!(packed, data);
            let out = decompress_capped(&packed, name, Path::new(name)).unwrap();
            assert_eq!(out, data, "{tool}");
        }
        assert_eq!(
            decompress_capped(b"plain", "m.ko", Path::new("m.ko")).unwrap(),
            b"plain"
        );
    }

    #[test]
    fn corrupt_and_oversized_outputs_are_errors() {
        let e = decompress_capped(b"not xz", "m.ko.xz", Path::new("m.ko.xz")).unwrap_err();
        assert!(format!("{e:#}").contains("decompressing m.ko.xz"), "{e:#}");
        let zeros = vec![0u8; (KO_CAP + 1) as usize];
        let bomb = compress("xz", &zeros);
        let e = decompress_capped(&bomb, "b.ko.xz", Path::new("b.ko.xz")).unwrap_err();
        assert!(format!("{e:#}").contains("larger than"), "{e:#}");
    }
}
