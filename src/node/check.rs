//! `khotfix node check`: evaluate a recipe's node conditions on a host.
//!
//! The order follows the seed's check script (required paths, kernel release,
//! flavour, range, loaded module) with its bugs fixed: the release is parsed in
//! full (`18.0.1`, not `18.0`), ranges are compared with rpm's rules instead of
//! `sort -V`, and "already fixed" means the livepatch is enabled *and* its
//! transition has finished, not that some module name matches `lsmod | grep`.
//!
//! The generated sh script (`node script`) implements the same decisions and
//! prints the same line; tests hold the two to each other.

use super::root::HostRoot;
use crate::kernel::KernelRelease;
use crate::recipe::Recipe;
use crate::util::exit;
use anyhow::{Context, Result};
use serde::Serialize;

/// The answer for one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// A required path is missing, the flavour is not covered, or the kernel
    /// is outside the affected set. Exit 0.
    NotAffected,
    /// The hotfix is live. Exit 0.
    Fixed,
    /// The hotfix is enabled but the livepatch transition is still running
    /// (some task still runs an old function). Exit 0: nothing to install,
    /// `node apply` waits for it; the DaemonSet label says `applying`.
    Applying,
    /// Affected, fixable, and the fix is not live. Exit 1.
    NeedsHotfix,
    /// Affected, but this flavour cannot be hot-fixed. Exit 3.
    Unfixable,
}

impl Verdict {
    /// The word used in output, JSON and node labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::NotAffected => "not-affected",
            Verdict::Fixed => "fixed",
            Verdict::Applying => "applying",
            Verdict::NeedsHotfix => "needs-hotfix",
            Verdict::Unfixable => "unfixable",
        }
    }

    /// The documented exit code of `node check`.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::NotAffected | Verdict::Fixed | Verdict::Applying => exit::OK,
            Verdict::NeedsHotfix => exit::FAILED,
            Verdict::Unfixable => exit::UNFIXABLE,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the check looked at, for `--json` and for operators.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evidence {
    /// The first required path that exists (host path).
    pub required_path: Option<String>,
    /// `/proc/sys/kernel/osrelease`.
    pub osrelease: Option<String>,
    /// Is the kernel in the recipe's affected set?
    pub in_range: Option<bool>,
    /// Contents of `/sys/kernel/livepatch/<module>/enabled`.
    pub livepatch_enabled: Option<String>,
    /// Contents of `/sys/kernel/livepatch/<module>/transition`.
    pub livepatch_transition: Option<String>,
    /// Is the module listed in `/proc/modules`?
    pub module_loaded: Option<bool>,
    /// `rpm -q <package>` result, when the host has rpm and an rpm database.
    pub package_installed: Option<bool>,
    /// Things the check could not establish, and why.
    pub notes: Vec<String>,
}

/// The full result of `node check`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub verdict: Verdict,
    pub reason: String,
    pub hotfix_id: u64,
    /// The running kernel release, when it was read.
    pub kernel: Option<String>,
    /// Its flavour (`al8`, `lifsea8`, `el8`, `debian`).
    pub flavor: Option<String>,
    /// The hotfix package for this kernel, when affected.
    pub package: Option<String>,
    /// The livepatch module that proves the fix.
    pub module: String,
    pub evidence: Evidence,
    pub exit_code: i32,
}

impl CheckReport {
    /// The one human line: `needs-hotfix: kernel ... is affected ...`.
    pub fn line(&self) -> String {
        format!("{}: {}", self.verdict, self.reason)
    }
}

/// State of the livepatch module on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveState {
    /// enabled = 1, transition = 0 (or a loaded non-livepatch kpatch module).
    Live,
    /// enabled = 1, transition = 1.
    Transitioning,
    /// A livepatch entry with enabled = 0.
    Disabled,
    /// Not loaded at all.
    Absent,
}

/// Read the module's livepatch state through the root, recording evidence.
pub fn live_state(root: &HostRoot, module: &str, ev: &mut Evidence) -> Result<LiveState> {
    let lp = format!("/sys/kernel/livepatch/{module}");
    let loaded = match root.read_opt("/proc/modules")? {
        Some(text) => Some(text.lines().any(|l| l.split(' ').next() == Some(module))),
        None => {
            ev.notes.push("/proc/modules is missing".into());
            None
        }
    };
    ev.module_loaded = loaded;
    if root.path(&lp).is_dir() {
        let enabled = root.read_opt(&format!("{lp}/enabled"))?;
        let transition = root.read_opt(&format!("{lp}/transition"))?;
        ev.livepatch_enabled = enabled.clone();
        ev.livepatch_transition = transition.clone();
        return Ok(match (enabled.as_deref(), transition.as_deref()) {
            (Some("1"), Some("1")) => LiveState::Transitioning,
            (Some("1"), _) => LiveState::Live,
            _ => LiveState::Disabled,
        });
    }
    Ok(if loaded == Some(true) {
        LiveState::Live
    } else {
        LiveState::Absent
    })
}

/// Is the package installed? `None` (with a note) when the host has no rpm
/// database or this machine no rpm binary: the check stays cheap and honest.
pub fn package_installed(root: &HostRoot, package: &str, ev: &mut Evidence) -> Option<bool> {
    let Some(dbpath) = root.rpmdb() else {
        ev.notes
            .push("no rpm database on the host: package state not checked".into());
        return None;
    };
    let mut cmd = std::process::Command::new("rpm");
    if !root.is_host() {
        cmd.arg("--root").arg(root.dir());
    }
    // Explicit, because this machine's rpm may default elsewhere (~/.rpmdb on Debian).
    cmd.arg("--dbpath").arg(&dbpath);
    cmd.args(["-q", "--quiet", package])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    match cmd.status() {
        Ok(s) => Some(s.success()),
        Err(e) => {
            ev.notes
                .push(format!("rpm not runnable ({e}): package state not checked"));
            None
        }
    }
}

/// A readable list of the recipe's affected kernels.
pub fn affected_set(recipe: &Recipe) -> String {
    let n = &recipe.node;
    let mut parts: Vec<String> = n
        .ranges
        .iter()
        .map(|r| format!("{} ..= {}", r.from, r.to))
        .collect();
    parts.extend(n.kernels.iter().map(|k| k.to_string()));
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// Every flavour the recipe talks about, fixable first.
pub fn covered_flavors(recipe: &Recipe) -> Vec<String> {
    let mut v = recipe.node.flavors.clone();
    for u in &recipe.node.unsupported {
        if !v.contains(&u.flavor) {
            v.push(u.flavor.clone());
        }
    }
    v
}

/// Evaluate the recipe on the host.
pub fn check(recipe: &Recipe, root: &HostRoot) -> Result<CheckReport> {
    let n = &recipe.node;
    let mut ev = Evidence::default();
    let report = |verdict: Verdict,
                  reason: String,
                  kernel: Option<&KernelRelease>,
                  package: Option<String>,
                  ev: Evidence| CheckReport {
        verdict,
        reason,
        hotfix_id: recipe.hotfix.id,
        kernel: kernel.map(|k| k.to_string()),
        flavor: kernel.map(|k| k.flavor.name()),
        package,
        module: n.module.clone(),
        evidence: ev,
        exit_code: verdict.exit_code(),
    };
    if !n.required_paths.is_empty() {
        ev.required_path = n.required_paths.iter().find(|p| root.exists(p)).cloned();
        if ev.required_path.is_none() {
            let reason = format!(
                "none of the required paths exist: {}",
                n.required_paths.join(", ")
            );
            return Ok(report(Verdict::NotAffected, reason, None, None, ev));
        }
    }
    let osrelease = root.osrelease()?;
    ev.osrelease = Some(osrelease.clone());
    let kernel = KernelRelease::parse(&osrelease)
        .with_context(|| format!("{}", root.path("/proc/sys/kernel/osrelease").display()))?;
    let flavor = kernel.flavor.name();
    let unsupported = n.unsupported.iter().find(|u| u.flavor == flavor);
    let fixable = n.flavors.contains(&flavor);
    if unsupported.is_none() && !fixable {
        let reason = format!(
            "kernel {kernel} is {flavor}, not a flavor this hotfix covers ({})",
            covered_flavors(recipe).join(", ")
        );
        return Ok(report(
            Verdict::NotAffected,
            reason,
            Some(&kernel),
            None,
            ev,
        ));
    }
    let in_range = n.affects(&kernel);
    ev.in_range = Some(in_range);
    if !in_range {
        let reason = format!(
            "kernel {kernel} is not in the affected kernels ({})",
            affected_set(recipe)
        );
        return Ok(report(
            Verdict::NotAffected,
            reason,
            Some(&kernel),
            None,
            ev,
        ));
    }
    let package = recipe.hotfix.package_name(&kernel);
    let module = &n.module;
    match live_state(root, module, &mut ev)? {
        LiveState::Live => {
            let reason = format!("kernel {kernel} is affected and {module} is live");
            return Ok(report(
                Verdict::Fixed,
                reason,
                Some(&kernel),
                Some(package),
                ev,
            ));
        }
        LiveState::Transitioning => {
            let reason = format!("kernel {kernel} is affected and {module} is enabled; its livepatch transition is still running");
            return Ok(report(
                Verdict::Applying,
                reason,
                Some(&kernel),
                Some(package),
                ev,
            ));
        }
        LiveState::Disabled | LiveState::Absent => {}
    }
    if let Some(u) = unsupported {
        let reason = format!(
            "kernel {kernel} ({flavor}) is affected and cannot be hot-fixed: {}",
            u.message
        );
        return Ok(report(Verdict::Unfixable, reason, Some(&kernel), None, ev));
    }
    let disabled = ev.livepatch_enabled.is_some();
    let mut reason = if disabled {
        format!(
            "kernel {kernel} is affected and {module} is loaded but disabled: install {package}"
        )
    } else {
        format!("kernel {kernel} is affected and {module} is not live: install {package}")
    };
    ev.package_installed = package_installed(root, &package, &mut ev);
    if ev.package_installed == Some(true) {
        reason = format!("kernel {kernel} is affected and {module} is not live although {package} is installed: reload it (kpatch load) or reinstall");
    }
    Ok(report(
        Verdict::NeedsHotfix,
        reason,
        Some(&kernel),
        Some(package),
        ev,
    ))
}

/// Find the recipe to use: the one given, or the single one installed on the
/// host under `<root>/etc/khotfix/recipes/*.toml`.
pub fn find_recipe(given: Option<&std::path::Path>, root: &HostRoot) -> Result<std::path::PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let dir = root.path("/etc/khotfix/recipes");
    let mut found: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    found.sort();
    match found.len() {
        0 => anyhow::bail!(
            "no --recipe given and no recipe installed in {}",
            dir.display()
        ),
        1 => Ok(found.remove(0)),
        n => anyhow::bail!(
            "no --recipe given and {n} recipes installed in {}: choose one with --recipe",
            dir.display()
        ),
    }
}

/// Load a recipe for node use (patch files need not exist on the host).
pub fn load_recipe(path: &std::path::Path) -> Result<Recipe> {
    Recipe::load_for_node(path).map_err(|e| anyhow::anyhow!("{e}"))
}
