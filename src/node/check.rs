//! `khotfix node check`: evaluate a recipe's node conditions on a host.
//!
//! The order follows the seed's check script (required paths, kernel release,
//! flavour, range, loaded module) with its bugs fixed: the release is parsed in
//! full (`18.0.1`, not `18.0`), ranges are compared with rpm's rules instead of
//! `sort -V`, and "already fixed" means the livepatch is enabled *and* its
//! transition has finished, not that some module name matches `lsmod | grep`.
//!
//! The generated sh script (`node script`) implements the same decisions and
//! prints the same line; tests hold the two to each other, including on
//! random host files (`tests/node_fuzz.rs`). Where the two used to differ,
//! this is the one answer both give:
//!
//! * Host files are bytes, not text. `osrelease` must be a valid release
//!   (after trimming ASCII white space: space, tab, CR, LF, FF); any other byte
//!   (NUL, invalid UTF-8) is an error, exit 2. `/proc/modules` is split into
//!   lines at newlines and NULs; the module is loaded when a line starts with
//!   `<module> `; other bytes (invalid UTF-8 included) do not matter. A
//!   livepatch flag file is true when it holds exactly `1` or `1\n`.
//! * Every host file is read through [`HostRoot`]: confined to the root,
//!   regular files only, size-limited; a violation is an error (exit 2).
//! * A livepatch directory without an `enabled` file counts as disabled.
//! * The rpm database is queried on a private copy (rpm writes even for
//!   `-q`); without database files, or without `rpm`, it is not queried.
//! * `node apply` without `--yes` and without dnf or yum: exit 1 (the node
//!   needs the hotfix; the plan says the install would fail), as the script.

use super::root::{clipped, shown, HostRoot, MODULES_CAP, RECIPE_CAP, RPMDB_CAP, VALUE_CAP};
use crate::kernel::KernelRelease;
use crate::recipe::Recipe;
use crate::util::exit;
use anyhow::{bail, Context, Result};
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

/// Is `module` listed in the text of `/proc/modules`? Lines end at a
/// newline or a NUL; the name is followed by a space.
pub fn modules_list_has(list: &[u8], module: &str) -> bool {
    let prefix = format!("{module} ");
    list.split(|&b| b == b'\n' || b == 0)
        .any(|l| l.starts_with(prefix.as_bytes()))
}

/// Does a sysfs flag file hold "true", exactly as the kernel writes it?
pub fn flag_is_one(bytes: &[u8]) -> bool {
    bytes == b"1" || bytes == b"1\n"
}

/// Read the module's livepatch state through the root, recording evidence.
pub fn live_state(root: &HostRoot, module: &str, ev: &mut Evidence) -> Result<LiveState> {
    let lp = format!("/sys/kernel/livepatch/{module}");
    let loaded = match root.read_capped("/proc/modules", MODULES_CAP)? {
        Some(list) => Some(modules_list_has(&list, module)),
        None => {
            ev.notes.push("/proc/modules is missing".into());
            None
        }
    };
    ev.module_loaded = loaded;
    if root.is_dir(&lp)? {
        let enabled = root.read_capped(&format!("{lp}/enabled"), VALUE_CAP)?;
        let transition = root.read_capped(&format!("{lp}/transition"), VALUE_CAP)?;
        let as_text = |b: &Vec<u8>| {
            if flag_is_one(b) {
                "1".to_string()
            } else {
                clipped(b.trim_ascii())
            }
        };
        ev.livepatch_enabled = enabled.as_ref().map(as_text);
        ev.livepatch_transition = transition.as_ref().map(as_text);
        let on = |v: &Option<Vec<u8>>| v.as_deref().is_some_and(flag_is_one);
        return Ok(match (on(&enabled), on(&transition)) {
            (true, true) => LiveState::Transitioning,
            (true, false) => LiveState::Live,
            (false, _) => LiveState::Disabled,
        });
    }
    Ok(if loaded == Some(true) {
        LiveState::Live
    } else {
        LiveState::Absent
    })
}

/// Files that mark a directory as an rpm database (sqlite, bdb, ndb).
const RPMDB_MARKERS: [&str; 3] = ["rpmdb.sqlite", "Packages", "Packages.db"];

/// A regular file of an rpm database worth copying: not a link, lock,
/// environment (`__db.*`) or shared-memory (`-shm`) file, not hidden.
fn is_db_file(dir: &std::path::Path, name: &str) -> bool {
    !name.starts_with('.')
        && !name.starts_with("__db.")
        && !name.ends_with("-shm")
        && std::fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.is_file())
}

/// The host's rpm database directory (resolved under the root) that holds
/// database files, if any.
pub(crate) fn rpmdb_with_files(root: &HostRoot) -> Result<Option<std::path::PathBuf>> {
    for d in root.rpmdb_dirs()? {
        let dir = root.resolve(d)?;
        if RPMDB_MARKERS.iter().any(|m| is_db_file(&dir, m)) {
            return Ok(Some(dir));
        }
    }
    Ok(None)
}

/// Copy the database files of `dir` into `to`, at most [`RPMDB_CAP`] bytes in
/// all. `Ok(false)` when the database is larger.
pub(crate) fn copy_rpmdb(dir: &std::path::Path, to: &std::path::Path) -> Result<bool> {
    use std::io::Read;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_db_file(dir, n))
        .collect();
    names.sort();
    let mut total = 0u64;
    for n in names {
        let src = dir.join(&n);
        let f = std::fs::File::open(&src).with_context(|| format!("reading {}", src.display()))?;
        let mut out = std::fs::File::create(to.join(&n))?;
        total += std::io::copy(&mut f.take(RPMDB_CAP - total + 1), &mut out)
            .with_context(|| format!("copying {}", src.display()))?;
        if total > RPMDB_CAP {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Is the package installed? `None` (with a note) when the host has no rpm
/// database files or this machine no rpm binary: the check stays cheap and
/// honest. rpm writes even for `-q` (it creates a database in an empty
/// directory, and `-shm`/`-wal` files next to an existing one), so the query
/// runs on a private copy and nothing under the root is ever written.
pub fn package_installed(
    root: &HostRoot,
    package: &str,
    ev: &mut Evidence,
) -> Result<Option<bool>> {
    let Some(dir) = rpmdb_with_files(root)? else {
        ev.notes
            .push("no rpm database on the host: package state not checked".into());
        return Ok(None);
    };
    let note = |ev: &mut Evidence, why: String| {
        ev.notes.push(format!("{why}: package state not checked"));
        Ok(None)
    };
    let tmp = match tempfile::Builder::new().prefix("khotfix-rpmdb.").tempdir() {
        Ok(t) => t,
        Err(e) => {
            return note(
                ev,
                format!("no private directory for a copy of the rpm database ({e})"),
            )
        }
    };
    match copy_rpmdb(&dir, tmp.path()) {
        Ok(true) => {}
        Ok(false) => {
            return note(
                ev,
                format!(
                    "the rpm database in {} is larger than {RPMDB_CAP} bytes",
                    dir.display()
                ),
            )
        }
        Err(e) => return note(ev, format!("{e:#}")),
    }
    let status = std::process::Command::new("rpm")
        .arg("--dbpath")
        .arg(tmp.path())
        .args(["-q", "--quiet", package])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) => Ok(Some(s.success())),
        Err(e) => note(ev, format!("rpm not runnable ({e})")),
    }
}

/// The running kernel, parsed from the host's `osrelease`. Any byte outside
/// the release alphabet is an error; the value is echoed only through [`shown`].
fn running_kernel(root: &HostRoot, ev: &mut Evidence) -> Result<KernelRelease> {
    let file = root.path("/proc/sys/kernel/osrelease");
    let raw = root.osrelease()?;
    let valid = raw
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || b"._+~-".contains(b));
    if !valid {
        bail!(
            "{}: invalid kernel release {}: contains a character outside [A-Za-z0-9._+~-]",
            file.display(),
            shown(&raw)
        );
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    ev.osrelease = Some(text.clone());
    KernelRelease::parse(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: invalid kernel release {}: {}",
            file.display(),
            shown(&raw),
            e.reason
        )
    })
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
        for p in &n.required_paths {
            if root.exists(p)? {
                ev.required_path = Some(p.clone());
                break;
            }
        }
        if ev.required_path.is_none() {
            let reason = format!(
                "none of the required paths exist: {}",
                n.required_paths.join(", ")
            );
            return Ok(report(Verdict::NotAffected, reason, None, None, ev));
        }
    }
    let kernel = running_kernel(root, &mut ev)?;
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
    let state = live_state(root, module, &mut ev)?;
    match state {
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
    let mut reason = if state == LiveState::Disabled {
        format!(
            "kernel {kernel} is affected and {module} is loaded but disabled: install {package}"
        )
    } else {
        format!("kernel {kernel} is affected and {module} is not live: install {package}")
    };
    ev.package_installed = package_installed(root, &package, &mut ev)?;
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

/// Where recipes are installed on a host (the node RPM's config directory).
pub const RECIPES_DIR: &str = "/etc/khotfix/recipes";

/// The recipes installed on the host, `<root>/etc/khotfix/recipes/*.toml`,
/// sorted by name, as host paths (none when the directory does not exist).
pub fn installed_recipes(root: &HostRoot) -> Result<Vec<String>> {
    let dir = root.path(RECIPES_DIR);
    let mut found: Vec<_> = match std::fs::read_dir(root.resolve(RECIPES_DIR)?) {
        Ok(rd) => rd
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".toml") && n.len() > 5)
            .map(|n| format!("{RECIPES_DIR}/{n}"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    found.sort();
    Ok(found)
}

/// An installed recipe (host path), confined and bounded like every host
/// read, resolved under the root for the loader (which reads it again).
pub fn installed_recipe_path(root: &HostRoot, host_path: &str) -> Result<std::path::PathBuf> {
    root.read_capped(host_path, RECIPE_CAP)?
        .with_context(|| format!("{}: no such file", root.path(host_path).display()))?;
    root.resolve(host_path)
}

/// Find the recipe to use: the one given, or the single one installed on the
/// host under `<root>/etc/khotfix/recipes/*.toml`.
pub fn find_recipe(given: Option<&std::path::Path>, root: &HostRoot) -> Result<std::path::PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let dir = root.path(RECIPES_DIR);
    let found = installed_recipes(root)?;
    match found.len() {
        0 => anyhow::bail!(
            "no --recipe given and no recipe installed in {}",
            dir.display()
        ),
        1 => installed_recipe_path(root, &found[0]),
        n => anyhow::bail!(
            "no --recipe given and {n} recipes installed in {}: choose one with --recipe",
            dir.display()
        ),
    }
}

/// Load a recipe for node use (patch files need not exist on the host), and
/// hold its node values to what the generated script accepts, so that every
/// node command refuses the same recipes (a message with U+2028 included).
pub fn load_recipe(path: &std::path::Path) -> Result<Recipe> {
    let recipe = Recipe::load_for_node(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    super::script::validate_recipe(&recipe)?;
    Ok(recipe)
}
