//! `status`: what `kpatch list` shows, for khotfix hotfixes: the loaded
//! livepatches (enabled, transition, and each patched object), and the
//! installed `kernel-hotfix-*` packages with the kernel each is for, marking
//! those for a kernel that is not running (left over after a kernel update,
//! or installed ahead of a reboot).
//!
//! Every read goes through [`HostRoot`] (confined, regular files, bounded);
//! the package query runs on a private copy of the rpm database, as `check`
//! does. Values read from the host are shown only through [`clipped`].

use super::check::{copy_rpmdb, flag_is_one, rpmdb_with_files};
use super::root::{clipped, HostRoot, VALUE_CAP};
use anyhow::{Context, Result};
use serde::Serialize;
use std::fmt::Write;

/// The provide every hotfix package carries: `kernel-hotfix = <uname -r>`.
const KERNEL_PROVIDE: &str = "kernel-hotfix";
/// At most this many livepatches (and objects per livepatch) are listed.
const MAX_ENTRIES: usize = 1024;

/// One object (`vmlinux` or a module) a livepatch patches.
#[derive(Debug, Clone, Serialize)]
pub struct PatchedObject {
    pub name: String,
    /// `<object>/patched`: the object is loaded and patched.
    pub patched: Option<bool>,
}

/// One entry of `/sys/kernel/livepatch`.
#[derive(Debug, Clone, Serialize)]
pub struct Livepatch {
    pub name: String,
    /// The hotfix id when the name is khotfix's `kpatch_<id>`.
    pub hotfix_id: Option<u64>,
    pub enabled: Option<bool>,
    pub transition: Option<bool>,
    pub objects: Vec<PatchedObject>,
}

/// One installed `kernel-hotfix-*` package.
#[derive(Debug, Clone, Serialize)]
pub struct HotfixPackage {
    pub name: String,
    /// `version-release.arch`.
    pub evra: String,
    /// The kernel it is for (its `kernel-hotfix` provide).
    pub kernel: Option<String>,
    /// Is that kernel the running one?
    pub for_running_kernel: bool,
}

/// The node's hotfix state.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub kernel: Option<String>,
    pub livepatches: Vec<Livepatch>,
    /// `None` when the packages could not be listed (see `notes`).
    pub packages: Option<Vec<HotfixPackage>>,
    pub notes: Vec<String>,
}

/// Names of the directories in a host directory (links not followed),
/// sorted, at most [`MAX_ENTRIES`].
fn subdirs(root: &HostRoot, host_dir: &str) -> Result<Vec<String>> {
    let dir = root.resolve(host_dir)?;
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e).with_context(|| format!("reading {}", root.path(host_dir).display()))
        }
    };
    let mut v = Vec::new();
    for e in rd.take(MAX_ENTRIES) {
        let e = e.with_context(|| format!("reading {}", root.path(host_dir).display()))?;
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            v.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    v.sort();
    Ok(v)
}

fn flag(root: &HostRoot, host_path: &str) -> Result<Option<bool>> {
    Ok(root
        .read_capped(host_path, VALUE_CAP)?
        .map(|b| flag_is_one(&b)))
}

/// The livepatches the kernel has loaded.
pub fn livepatches(root: &HostRoot) -> Result<Vec<Livepatch>> {
    const LP: &str = "/sys/kernel/livepatch";
    let mut out = Vec::new();
    for name in subdirs(root, LP)? {
        let dir = format!("{LP}/{name}");
        let mut objects = Vec::new();
        for o in subdirs(root, &dir)? {
            objects.push(PatchedObject {
                patched: flag(root, &format!("{dir}/{o}/patched"))?,
                name: clipped(o.as_bytes()),
            });
        }
        out.push(Livepatch {
            hotfix_id: name.strip_prefix("kpatch_").and_then(|n| n.parse().ok()),
            enabled: flag(root, &format!("{dir}/enabled"))?,
            transition: flag(root, &format!("{dir}/transition"))?,
            name: clipped(name.as_bytes()),
            objects,
        });
    }
    Ok(out)
}

/// The installed hotfix packages, from a private copy of the rpm database.
/// `Err(note)` when they cannot be listed.
fn packages(root: &HostRoot, running: Option<&str>) -> Result<Result<Vec<HotfixPackage>, String>> {
    let Some(dir) = rpmdb_with_files(root)? else {
        return Ok(Err(
            "no rpm database on the host: packages not listed".into()
        ));
    };
    let tmp = match tempfile::Builder::new().prefix("khotfix-rpmdb.").tempdir() {
        Ok(t) => t,
        Err(e) => {
            return Ok(Err(format!(
                "no private directory for the rpm database ({e})"
            )))
        }
    };
    match copy_rpmdb(&dir, tmp.path()) {
        Ok(true) => {}
        Ok(false) => {
            return Ok(Err(format!(
                "the rpm database in {} is too large",
                dir.display()
            )))
        }
        Err(e) => return Ok(Err(format!("{e:#}"))),
    }
    // One line per package: name, version-release.arch, then its provides.
    let qf = "%{NAME}\\t%{VERSION}-%{RELEASE}.%{ARCH}[\\t%{PROVIDENAME}=%{PROVIDEVERSION}]\\n";
    let mut rpm = crate::util::proc::process("rpm");
    rpm.arg("--dbpath")
        .arg(tmp.path())
        .args(["-qa", "--qf", qf, "kernel-hotfix-*"]);
    let out = match rpm.output_unchecked() {
        Ok(o) => o,
        Err(e) => return Ok(Err(format!("{e}: packages not listed"))),
    };
    let mut v = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.split('\t');
        let (Some(name), Some(evra)) = (f.next(), f.next()) else {
            continue;
        };
        let kernel = f
            .filter_map(|p| p.strip_prefix(KERNEL_PROVIDE)?.strip_prefix('='))
            .next()
            .map(str::to_string);
        v.push(HotfixPackage {
            name: clipped(name.as_bytes()),
            evra: clipped(evra.as_bytes()),
            for_running_kernel: kernel.is_some() && kernel.as_deref() == running,
            kernel: kernel.map(|k| clipped(k.as_bytes())),
        });
    }
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Ok(v))
}

/// Read the node's hotfix state.
pub fn read(root: &HostRoot) -> Result<Status> {
    let kernel = root
        .osrelease()
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let mut notes = Vec::new();
    if kernel.is_none() {
        notes.push("the running kernel release could not be read".into());
    }
    let packages = match packages(root, kernel.as_deref())? {
        Ok(v) => Some(v),
        Err(note) => {
            notes.push(note);
            None
        }
    };
    Ok(Status {
        kernel: kernel.map(|k| clipped(k.as_bytes())),
        livepatches: livepatches(root)?,
        packages,
        notes,
    })
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "1",
        Some(false) => "0",
        None => "?",
    }
}

impl Status {
    /// The human listing.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let running = self.kernel.as_deref().unwrap_or("unknown");
        let _ = writeln!(s, "Running kernel: {running}");
        let _ = writeln!(s, "Loaded livepatches:");
        if self.livepatches.is_empty() {
            let _ = writeln!(s, "  (none)");
        }
        for lp in &self.livepatches {
            let id = lp
                .hotfix_id
                .map(|i| format!(" [hotfix {i}]"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  {}{id} enabled={} transition={}",
                lp.name,
                yes_no(lp.enabled),
                yes_no(lp.transition)
            );
            for o in &lp.objects {
                let _ = writeln!(s, "    {} patched={}", o.name, yes_no(o.patched));
            }
        }
        let _ = writeln!(s, "Installed hotfix packages:");
        match &self.packages {
            None => {}
            Some(p) if p.is_empty() => {
                let _ = writeln!(s, "  (none)");
            }
            Some(p) => {
                for pkg in p {
                    let k = pkg.kernel.as_deref().unwrap_or("unknown kernel");
                    let mark = if pkg.for_running_kernel {
                        "running"
                    } else {
                        "NOT the running kernel"
                    };
                    let _ = writeln!(s, "  {}-{} for {k} ({mark})", pkg.name, pkg.evra);
                }
            }
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }
}
