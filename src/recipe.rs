//! Recipes: one hotfix described in TOML (see the README for an annotated
//! example). Loading validates every value that later reaches a path, a shell
//! script or a package name; each problem is reported as `file:line:col: what`.

use crate::kernel::KernelRelease;
use crate::patchfile::Patch;
use crate::util::validate;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// How the livepatch module is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// kpatch-build turns a source diff into a livepatch module.
    Kpatch,
    /// A hand-written livepatch module source compiled with kbuild.
    Kbuild,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Kpatch => "kpatch",
            Backend::Kbuild => "kbuild",
        })
    }
}

/// Which of the matching kernels a target builds for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Select {
    /// Every matching kernel.
    #[default]
    All,
    /// Only the newest matching kernel (e.g. Debian's current ABI).
    Newest,
}

/// An inclusive range of kernels, compared by version-release with rpm rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelRange {
    pub from: KernelRelease,
    pub to: KernelRelease,
}

impl KernelRange {
    pub fn contains(&self, k: &KernelRelease) -> bool {
        use std::cmp::Ordering::*;
        k.cmp_version_release(&self.from) != Less && k.cmp_version_release(&self.to) != Greater
    }
}

impl fmt::Display for KernelRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ..= {}", self.from, self.to)
    }
}

/// One changelog entry of the hotfix package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangelogEntry {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// `Name <email>`.
    pub author: String,
    pub text: String,
}

/// The hotfix's identity and package metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hotfix {
    /// The number in `kernel-hotfix-<id>`.
    pub id: u64,
    pub name: String,
    pub summary: String,
    pub description: String,
    pub version: String,
    pub changelog: Vec<ChangelogEntry>,
}

/// The names a hotfix id gives its module, formatted here and nowhere else
/// (build, package, verify and node must agree on them to the byte).
pub mod names {
    /// `kpatch-<id>`: the module's base name (kpatch-build's `-n`, Kbuild's
    /// `obj-m`).
    pub fn module_base(id: u64) -> String {
        format!("kpatch-{id}")
    }

    /// `kpatch-<id>.ko`: the module file name.
    pub fn module_file(id: u64) -> String {
        format!("{}.ko", module_base(id))
    }

    /// `kpatch_<id>`: the loaded module (and /sys/kernel/livepatch entry)
    /// name; the kernel turns the file name's `-` into `_`.
    pub fn module_name(id: u64) -> String {
        module_base(id).replace('-', "_")
    }
}

impl Hotfix {
    /// `kpatch_<id>`: the loaded module (and /sys/kernel/livepatch entry) name.
    pub fn module_name(&self) -> String {
        names::module_name(self.id)
    }

    /// `kpatch-<id>.ko`: the module file name.
    pub fn module_file(&self) -> String {
        names::module_file(self.id)
    }

    /// `kernel-hotfix-<id>-<version-release>` for a kernel.
    pub fn package_name(&self, kernel: &KernelRelease) -> String {
        format!("kernel-hotfix-{}-{}", self.id, kernel.package_suffix())
    }
}

/// A set of kernels to build for on one distro.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub name: String,
    pub distro: String,
    pub backend: Backend,
    pub kernels: Vec<KernelRelease>,
    pub ranges: Vec<KernelRange>,
    pub exclude: Vec<KernelRelease>,
    pub select: Select,
    /// Source diffs (kpatch backend), absolute.
    pub patches: Vec<PathBuf>,
    /// Directory holding the livepatch module source (kbuild backend), absolute.
    pub module_source: Option<PathBuf>,
    pub skip_compiler_check: bool,
    /// Whether `run` publishes this target's packages (default true). A
    /// verify-only target (`publish = false`) is built, signed, packaged and
    /// boot-checked like any other, e.g. as a cross-check of another
    /// target that ships the same hotfix for the same kernels.
    pub publish: bool,
}

impl Target {
    /// Does `k` fall in this target (explicit or in a range, and not excluded)?
    /// Flavour is checked by the caller against the distro.
    pub fn matches(&self, k: &KernelRelease) -> bool {
        let excluded = self.exclude.iter().any(|e| same_kernel(e, k));
        let listed = self.kernels.iter().any(|e| same_kernel(e, k));
        let ranged = self.ranges.iter().any(|r| r.contains(k));
        !excluded && (listed || ranged)
    }
}

/// The published targets seen so far, to find two that can match the same
/// kernel (they would ship two different packages under one name). Listed
/// kernels are looked up by name; ranges (few per recipe) are compared with
/// every range and listed kernel of their distro, so a recipe with
/// thousands of single-kernel targets stays linear.
#[derive(Default)]
struct PublishIndex {
    /// (distro, kernel) → target name.
    listed: std::collections::HashMap<(String, String), String>,
    /// Listed kernels per distro, for range checks.
    kernels_of: std::collections::HashMap<String, Vec<(KernelRelease, String)>>,
    /// (distro, range, target name).
    ranges: Vec<(String, KernelRange, String)>,
}

impl PublishIndex {
    /// The earlier published target `t` would clash with, if any.
    fn clash(&self, t: &Target) -> Option<String> {
        use std::cmp::Ordering::Greater;
        if !t.publish {
            return None;
        }
        for k in &t.kernels {
            if let Some(o) = self.listed.get(&(t.distro.clone(), k.to_string())) {
                return Some(o.clone());
            }
        }
        for (d, r, o) in &self.ranges {
            let meets = t.ranges.iter().any(|x| {
                x.from.cmp_version_release(&r.to) != Greater
                    && r.from.cmp_version_release(&x.to) != Greater
            });
            if d == &t.distro && (meets || t.kernels.iter().any(|k| r.contains(k))) {
                return Some(o.clone());
            }
        }
        if !t.ranges.is_empty() {
            let earlier = self
                .kernels_of
                .get(&t.distro)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            if let Some((_, o)) = earlier.iter().find(|(k, _)| t.matches(k)) {
                return Some(o.clone());
            }
        }
        None
    }

    fn add(&mut self, t: &Target) {
        if !t.publish {
            return;
        }
        for k in &t.kernels {
            self.listed
                .insert((t.distro.clone(), k.to_string()), t.name.clone());
            self.kernels_of
                .entry(t.distro.clone())
                .or_default()
                .push((k.clone(), t.name.clone()));
        }
        for r in &t.ranges {
            self.ranges
                .push((t.distro.clone(), r.clone(), t.name.clone()));
        }
    }
}

/// A bare `version-release` matches any dist/arch; a full release matches exactly.
fn same_kernel(pattern: &KernelRelease, k: &KernelRelease) -> bool {
    if pattern.is_bare() {
        pattern.cmp_version_release(k).is_eq()
    } else {
        pattern == k
    }
}

/// A flavour that is affected but cannot be hot-fixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unsupported {
    pub flavor: String,
    pub message: String,
}

/// What `node check` evaluates on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeConditions {
    /// Any-of: the node is only affected if one of these exists.
    pub required_paths: Vec<String>,
    /// Flavours that get the hotfix (`al8`).
    pub flavors: Vec<String>,
    /// Flavours affected but not hot-fixable, with what to do instead.
    pub unsupported: Vec<Unsupported>,
    /// The loaded module that proves the fix (`kpatch_22519882`).
    pub module: String,
    /// Affected kernels (defaults to the union of the targets' ranges).
    pub ranges: Vec<KernelRange>,
    /// Affected kernels listed one by one (defaults to the targets' lists).
    pub kernels: Vec<KernelRelease>,
}

impl NodeConditions {
    /// Is this kernel release in the affected set?
    pub fn affects(&self, k: &KernelRelease) -> bool {
        self.ranges.iter().any(|r| r.contains(k)) || self.kernels.iter().any(|e| same_kernel(e, k))
    }
}

/// A loaded, validated recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipe {
    pub path: PathBuf,
    pub hotfix: Hotfix,
    pub targets: Vec<Target>,
    pub node: NodeConditions,
}

/// A problem in a recipe, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{file}:{line}:{col}: {message}")]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// All problems found in one recipe (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeErrors(pub Vec<Diagnostic>);

impl fmt::Display for RecipeErrors {
    /// The first problem, on one line (lint prints all of them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.first() {
            Some(d) => write!(f, "{d}"),
            None => f.write_str("invalid recipe"),
        }
    }
}

impl std::error::Error for RecipeErrors {}

// ---- raw TOML shape -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    hotfix: Spanned<RawHotfix>,
    #[serde(default)]
    target: Vec<Spanned<RawTarget>>,
    node: Option<Spanned<RawNode>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHotfix {
    id: Spanned<i64>,
    name: Spanned<String>,
    summary: Spanned<String>,
    description: Spanned<String>,
    version: Spanned<String>,
    #[serde(default)]
    backend: Option<Backend>,
    #[serde(default)]
    changelog: Vec<Spanned<RawChangelogEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChangelogEntry {
    date: Spanned<String>,
    author: Spanned<String>,
    text: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    from: Spanned<String>,
    to: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: Spanned<String>,
    distro: Spanned<String>,
    #[serde(default)]
    backend: Option<Backend>,
    #[serde(default)]
    kernels: Vec<Spanned<String>>,
    #[serde(default)]
    ranges: Vec<Spanned<RawRange>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    #[serde(default)]
    select: Select,
    #[serde(default)]
    patches: Vec<Spanned<String>>,
    #[serde(default)]
    module_source: Option<Spanned<String>>,
    #[serde(default)]
    skip_compiler_check: bool,
    #[serde(default)]
    publish: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnsupported {
    flavor: Spanned<String>,
    message: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    #[serde(default)]
    required_paths: Vec<Spanned<String>>,
    #[serde(default)]
    flavors: Vec<Spanned<String>>,
    #[serde(default)]
    unsupported: Vec<Spanned<RawUnsupported>>,
    #[serde(default)]
    module: Option<Spanned<String>>,
    #[serde(default)]
    ranges: Vec<Spanned<RawRange>>,
    #[serde(default)]
    kernels: Vec<Spanned<String>>,
}

// ---- loading --------------------------------------------------------------

/// Collects diagnostics while a recipe is checked.
struct Checker<'a> {
    file: String,
    text: &'a str,
    /// The recipe root (see [`recipe_root`]).
    dir: PathBuf,
    /// The directory holding the recipe.
    local: PathBuf,
    diags: Vec<Diagnostic>,
    /// Node use: patch files and module sources need not exist on the host.
    for_node: bool,
}

impl Checker<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, col) = line_col(self.text, span.start);
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line,
            col,
            message: one_line(message.into()),
        });
    }

    fn check<T>(&mut self, span: Range<usize>, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(m) => {
                self.at(span, m);
                None
            }
        }
    }

    fn kernel(&mut self, s: &Spanned<String>) -> Option<KernelRelease> {
        let r = KernelRelease::parse(s.get_ref()).map_err(|e| e.to_string());
        self.check(s.span(), r)
    }

    fn range(&mut self, r: &Spanned<RawRange>) -> Option<KernelRange> {
        let raw = r.get_ref();
        let (from, to) = (self.kernel(&raw.from)?, self.kernel(&raw.to)?);
        if from.cmp_version_release(&to).is_gt() {
            self.at(r.span(), format!("empty range: {} is after {}", from, to));
            return None;
        }
        Some(KernelRange { from, to })
    }

    /// Free text that reaches a package header, a script or a node message:
    /// not empty, no control characters (multi-line text may have newlines
    /// and tabs), nothing invisible or reordering (see [`non_printing`]).
    fn text(&mut self, what: &str, s: &Spanned<String>, one_line: bool) -> String {
        let v = s.get_ref();
        if v.trim().is_empty() {
            self.at(s.span(), format!("{what} is empty"));
        } else if one_line {
            let r = validate::message(what, v);
            if self.check(s.span(), r).is_some() {
                self.printable(what, s);
            }
        } else if let Some(c) = v
            .chars()
            .find(|c| c.is_control() && *c != '\n' && *c != '\t')
        {
            self.at(
                s.span(),
                format!("{what} contains the control character {c:?}"),
            );
        } else {
            self.printable(what, s);
        }
        v.clone()
    }

    fn printable(&mut self, what: &str, s: &Spanned<String>) {
        if let Some((c, name)) = s
            .get_ref()
            .chars()
            .find_map(|c| Some((c, non_printing(c)?)))
        {
            self.at(
                s.span(),
                format!(
                    "{what} contains U+{:04X} ({name}), which does not print or reorders the text around it",
                    c as u32
                ),
            );
        }
    }

    /// A file or directory named relative to the recipe root, which must
    /// exist and (after resolving symlinks) stay inside the root.
    fn local_path(&mut self, what: &str, s: &Spanned<String>, want_dir: bool) -> Option<PathBuf> {
        let r = validate::relative_path(what, s.get_ref());
        self.check(s.span(), r)?;
        // Next to the recipe first, then from the recipe root.
        let mut candidates = vec![self.local.join(s.get_ref()), self.dir.join(s.get_ref())];
        candidates.dedup();
        let kind_ok = |p: &PathBuf| if want_dir { p.is_dir() } else { p.is_file() };
        let found = candidates.iter().find(|p| kind_ok(p)).cloned();
        if self.for_node {
            return Some(found.unwrap_or_else(|| candidates[candidates.len() - 1].clone()));
        }
        let Some(p) = found else {
            let kind = if want_dir { "directory" } else { "file" };
            let tried: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
            self.at(
                s.span(),
                format!(
                    "{what} {:?}: no such {kind} (looked for {})",
                    s.get_ref(),
                    tried.join(" and ")
                ),
            );
            return None;
        };
        match (std::fs::canonicalize(&p), std::fs::canonicalize(&self.dir)) {
            (Ok(real), Ok(root)) if real.starts_with(&root) => Some(real),
            (Ok(real), Ok(root)) => {
                let msg = format!(
                    "{what} {:?} resolves to {}, outside the recipe root {} (symlink escape)",
                    s.get_ref(),
                    real.display(),
                    root.display()
                );
                self.at(s.span(), msg);
                None
            }
            (Err(e), _) | (_, Err(e)) => {
                self.at(s.span(), format!("{what} {:?}: {e}", s.get_ref()));
                None
            }
        }
    }

    fn patch(&mut self, s: &Spanned<String>) -> Option<PathBuf> {
        let p = self.local_path("patch", s, false)?;
        if self.for_node {
            return Some(p);
        }
        match crate::patchfile::read_patch_file(&p) {
            Ok(text) => {
                if let Err(e) = Patch::parse(&text) {
                    let what = if e.too_large {
                        "too large"
                    } else {
                        "not a valid unified diff"
                    };
                    self.at(s.span(), format!("patch {:?}: {what}: {e}", s.get_ref()));
                    return None;
                }
            }
            Err(e) => {
                self.at(s.span(), format!("patch {}: {e}", s.get_ref()));
                return None;
            }
        }
        Some(p)
    }
}

/// The recipe root: the parent of the directory holding the recipe. A
/// recipe's relative paths are looked up next to the recipe first, then from
/// the root, so that `recipes/x.toml` names `patches/...` from the repository
/// root without `..`; whatever they resolve to must stay inside the root.
pub fn recipe_root(path: &Path) -> PathBuf {
    let abs = recipe_dir(path);
    match abs.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => abs,
    }
}

/// The directory holding the recipe, absolute when it exists.
pub fn recipe_dir(path: &Path) -> PathBuf {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Diagnostics are one line each: control characters that came from the
/// recipe (e.g. a newline inside a quoted path) are shown escaped.
fn one_line(message: String) -> String {
    if !message.chars().any(char::is_control) {
        return message;
    }
    message
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    // Spans come from the TOML parser; never trust them to split a character.
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
        + 1;
    (line, col)
}

impl Recipe {
    /// The recipes named, or `./recipes/*.toml` (sorted) when none are. A bad
    /// recipe's error is its [`RecipeErrors`].
    pub fn load_all(paths: &[PathBuf]) -> anyhow::Result<Vec<Recipe>> {
        let paths = if paths.is_empty() {
            let dir = Path::new("recipes");
            let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| anyhow::anyhow!("no recipes given and ./recipes is unreadable: {e}"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            v.sort();
            v
        } else {
            paths.to_vec()
        };
        paths
            .iter()
            .map(|p| Recipe::load(p).map_err(anyhow::Error::from))
            .collect()
    }

    /// Read and validate a recipe file.
    pub fn load(path: &Path) -> Result<Recipe, RecipeErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            RecipeErrors(vec![Diagnostic {
                file: file.clone(),
                line: 1,
                col: 1,
                message: format!("cannot read recipe: {e}"),
            }])
        })?;
        Self::parse(path, &text)
    }

    /// Read and validate a recipe on a node (`khotfix node ...`): every check
    /// of [`Recipe::load`] except that patch files and module sources, which
    /// only the build host has, need not exist.
    pub fn load_for_node(path: &Path) -> Result<Recipe, RecipeErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            RecipeErrors(vec![Diagnostic {
                file: file.clone(),
                line: 1,
                col: 1,
                message: format!("cannot read recipe: {e}"),
            }])
        })?;
        Self::parse_with(path, &text, true)
    }

    /// Validate recipe text; `path` locates relative patch files and names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Recipe, RecipeErrors> {
        Self::parse_with(path, text, false)
    }

    fn parse_with(path: &Path, text: &str, for_node: bool) -> Result<Recipe, RecipeErrors> {
        let dir = recipe_root(path);
        let mut c = Checker {
            file: path.display().to_string(),
            text,
            dir,
            local: recipe_dir(path),
            diags: Vec::new(),
            for_node,
        };
        let raw: RawRecipe = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let msg = e.message().replace('\n', " ");
                c.at(span, msg.trim().to_string());
                return Err(RecipeErrors(c.diags));
            }
        };
        let recipe = Self::check(&mut c, path, raw);
        match recipe {
            Some(r) if c.diags.is_empty() => Ok(r),
            _ => {
                if c.diags.is_empty() {
                    c.at(0..0, "invalid recipe");
                }
                Err(RecipeErrors(c.diags))
            }
        }
    }

    fn check(c: &mut Checker, path: &Path, raw: RawRecipe) -> Option<Recipe> {
        let hotfix_span = raw.hotfix.span();
        let h = raw.hotfix.into_inner();
        let id = match *h.id.get_ref() {
            n if (1..=999_999_999_999).contains(&n) => n as u64,
            n => {
                c.at(
                    h.id.span(),
                    format!("hotfix id {n} must be a positive number of at most 12 digits"),
                );
                0
            }
        };
        let r = validate::identifier("hotfix name", h.name.get_ref());
        c.check(h.name.span(), r);
        let r = validate::package_token("hotfix version", h.version.get_ref()).and_then(|()| {
            if h.version.get_ref().contains('-') {
                Err(format!(
                    "hotfix version {:?} contains '-', which an RPM version cannot",
                    h.version.get_ref()
                ))
            } else {
                Ok(())
            }
        });
        c.check(h.version.span(), r);
        let summary = c.text("summary", &h.summary, true);
        let description = c.text("description", &h.description, false);
        for e in &h.changelog {
            let e = e.get_ref();
            if !is_date(e.date.get_ref()) {
                c.at(
                    e.date.span(),
                    format!(
                        "changelog date {:?} must be YYYY-MM-DD from 1970-01-01 to {LAST_RPM_DATE} \
                         (RPM keeps dates as 32-bit seconds)",
                        e.date.get_ref()
                    ),
                );
            }
            c.text("changelog author", &e.author, true);
            c.text("changelog text", &e.text, false);
        }
        let hotfix = Hotfix {
            id,
            name: h.name.get_ref().clone(),
            summary,
            description,
            version: h.version.get_ref().clone(),
            changelog: h
                .changelog
                .into_iter()
                .map(|e| {
                    let e = e.into_inner();
                    ChangelogEntry {
                        date: e.date.into_inner(),
                        author: e.author.into_inner(),
                        text: e.text.into_inner(),
                    }
                })
                .collect(),
        };
        if raw.target.is_empty() {
            c.at(hotfix_span.clone(), "recipe has no [[target]]");
        }
        let default_backend = h.backend.unwrap_or(Backend::Kpatch);
        let mut targets = Vec::new();
        let mut names = std::collections::HashSet::new();
        let mut published = PublishIndex::default();
        for raw_t in &raw.target {
            if let Some(t) = Self::check_target(c, raw_t, default_backend) {
                if !names.insert(t.name.clone()) {
                    c.at(
                        second_name_span(&raw.target, &t.name),
                        format!("duplicate target name {:?}", t.name),
                    );
                } else if let Some(o) = published.clash(&t) {
                    c.at(
                        raw_t.get_ref().name.span(),
                        format!(
                            "targets {o:?} and {:?} would both publish kernel-hotfix-{id} for the same {} kernels; set publish = false on one (a verify-only cross-check)",
                            t.name, t.distro
                        ),
                    );
                } else {
                    published.add(&t);
                }
                targets.push(t);
            }
        }
        // The package name (`kernel-hotfix-<id>-<version-release>`) of each
        // listed kernel must be one the package stage accepts.
        for k in raw.target.iter().flat_map(|t| &t.get_ref().kernels) {
            if let (Ok(kernel), true) = (KernelRelease::parse(k.get_ref()), id > 0) {
                let r = validate::package_token("package name", &hotfix.package_name(&kernel));
                c.check(k.span(), r);
            }
        }
        let node = Self::check_node(c, raw.node.as_ref(), &hotfix, &targets, hotfix_span);
        Some(Recipe {
            path: path.to_path_buf(),
            hotfix,
            targets,
            node,
        })
    }

    fn check_target(
        c: &mut Checker,
        t: &Spanned<RawTarget>,
        default_backend: Backend,
    ) -> Option<Target> {
        let span = t.span();
        let t = t.get_ref();
        let r = validate::identifier("target name", t.name.get_ref());
        c.check(t.name.span(), r);
        let distro = match crate::distro::Distro::builtin(t.distro.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                c.at(t.distro.span(), e.to_string());
                None
            }
        };
        let kernels: Vec<_> = t.kernels.iter().filter_map(|k| c.kernel(k)).collect();
        let ranges: Vec<_> = t.ranges.iter().filter_map(|r| c.range(r)).collect();
        let exclude: Vec<_> = t.exclude.iter().filter_map(|k| c.kernel(k)).collect();
        if t.kernels.is_empty() && t.ranges.is_empty() {
            c.at(
                span.clone(),
                format!(
                    "target {:?} names no kernels and no ranges",
                    t.name.get_ref()
                ),
            );
        }
        if let Some(d) = &distro {
            for s in &t.kernels {
                let Ok(k) = KernelRelease::parse(s.get_ref()) else {
                    continue;
                };
                if !k.is_bare() && !d.owns(&k) {
                    c.at(
                        s.span(),
                        format!(
                            "kernel {k} does not belong to distro {} (dist {}, expected {})",
                            d.name,
                            k.flavor,
                            d.dists.join("/")
                        ),
                    );
                }
            }
        }
        let backend = t.backend.unwrap_or(default_backend);
        let patches: Vec<_> = t.patches.iter().filter_map(|p| c.patch(p)).collect();
        let module_source = t
            .module_source
            .as_ref()
            .and_then(|m| c.local_path("module_source", m, true));
        match backend {
            Backend::Kpatch if t.patches.is_empty() => c.at(
                span,
                format!(
                    "target {:?} uses the kpatch backend but lists no patches",
                    t.name.get_ref()
                ),
            ),
            Backend::Kbuild if t.module_source.is_none() => c.at(
                span,
                format!(
                    "target {:?} uses the kbuild backend but has no module_source",
                    t.name.get_ref()
                ),
            ),
            Backend::Kpatch if t.module_source.is_some() => {
                if let Some(m) = &t.module_source {
                    c.at(
                        m.span(),
                        format!(
                            "target {:?} uses the kpatch backend: module_source is for kbuild targets",
                            t.name.get_ref()
                        ),
                    );
                }
            }
            Backend::Kbuild if !t.patches.is_empty() => c.at(
                t.patches[0].span(),
                format!(
                    "target {:?} uses the kbuild backend: patches are for kpatch targets \
                     (put the fix in the module source)",
                    t.name.get_ref()
                ),
            ),
            // Nodes only have the recipe, not the module source.
            Backend::Kbuild if !c.for_node => {
                if let (Some(dir), Some(m)) = (&module_source, &t.module_source) {
                    if let Err(msg) = check_module_source(dir) {
                        c.at(m.span(), format!("module_source {:?}: {msg}", m.get_ref()));
                    }
                }
            }
            _ => {}
        }
        Some(Target {
            name: t.name.get_ref().clone(),
            distro: t.distro.get_ref().clone(),
            backend,
            kernels,
            ranges,
            exclude,
            select: t.select,
            patches,
            module_source,
            skip_compiler_check: t.skip_compiler_check,
            publish: t.publish.unwrap_or(true),
        })
    }

    fn check_node(
        c: &mut Checker,
        node: Option<&Spanned<RawNode>>,
        hotfix: &Hotfix,
        targets: &[Target],
        fallback: Range<usize>,
    ) -> NodeConditions {
        let default_flavors = || {
            let mut f: Vec<String> = targets
                .iter()
                .filter_map(|t| crate::distro::Distro::builtin(&t.distro).ok())
                .flat_map(|d| d.dists)
                .collect();
            f.dedup();
            f
        };
        let Some(n) = node else {
            return NodeConditions {
                required_paths: vec![],
                flavors: default_flavors(),
                unsupported: vec![],
                module: hotfix.module_name(),
                ranges: targets.iter().flat_map(|t| t.ranges.clone()).collect(),
                kernels: targets.iter().flat_map(|t| t.kernels.clone()).collect(),
            };
        };
        let n = n.get_ref();
        for p in &n.required_paths {
            let r = validate::host_path("required path", p.get_ref());
            c.check(p.span(), r);
        }
        let flavor_ok = |c: &mut Checker, s: &Spanned<String>| {
            let r = validate::identifier("flavor", s.get_ref());
            c.check(s.span(), r);
        };
        for f in &n.flavors {
            flavor_ok(c, f);
        }
        let mut unsupported = Vec::new();
        for u in &n.unsupported {
            let u = u.get_ref();
            flavor_ok(c, &u.flavor);
            let message = c.text("unsupported message", &u.message, true);
            unsupported.push(Unsupported {
                flavor: u.flavor.get_ref().clone(),
                message,
            });
        }
        let module = match &n.module {
            Some(m) => {
                let r = validate::identifier("node module", m.get_ref());
                c.check(m.span(), r);
                if m.get_ref().contains('-') {
                    c.at(
                        m.span(),
                        "node module is the loaded name: use '_' where the file name has '-'",
                    );
                }
                m.get_ref().clone()
            }
            None => hotfix.module_name(),
        };
        let ranges: Vec<_> = n.ranges.iter().filter_map(|r| c.range(r)).collect();
        let kernels: Vec<_> = n.kernels.iter().filter_map(|k| c.kernel(k)).collect();
        let (ranges, kernels) = if n.ranges.is_empty() && n.kernels.is_empty() {
            (
                targets.iter().flat_map(|t| t.ranges.clone()).collect(),
                targets.iter().flat_map(|t| t.kernels.clone()).collect(),
            )
        } else {
            (ranges, kernels)
        };
        let flavors = if n.flavors.is_empty() {
            default_flavors()
        } else {
            n.flavors.iter().map(|f| f.get_ref().clone()).collect()
        };
        if flavors.is_empty() {
            c.at(fallback, "node conditions name no flavors");
        }
        NodeConditions {
            required_paths: n
                .required_paths
                .iter()
                .map(|p| p.get_ref().clone())
                .collect(),
            flavors,
            unsupported,
            module,
            ranges,
            kernels,
        }
    }
}

/// A kbuild module source directory needs a Kbuild or Makefile and C source.
fn check_module_source(dir: &Path) -> Result<(), String> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    if !names.iter().any(|n| n == "Kbuild" || n == "Makefile") {
        return Err("no Kbuild or Makefile: not a kbuild module source".into());
    }
    if !names.iter().any(|n| n.ends_with(".c")) {
        return Err("no .c file: not a kbuild module source".into());
    }
    Ok(())
}

/// Where a duplicate target name is written the second time.
fn second_name_span(targets: &[Spanned<RawTarget>], name: &str) -> Range<usize> {
    targets
        .iter()
        .filter(|t| t.get_ref().name.get_ref() == name)
        .nth(1)
        .map(|t| t.get_ref().name.span())
        .unwrap_or(0..0)
}

/// The last changelog date whose midnight fits RPM's 32-bit time (u32 seconds).
const LAST_RPM_DATE: &str = "2106-02-07";

/// What kind of invisible character `c` is, if it is one: line and
/// paragraph separators, bidi controls, zero-width and other format
/// characters (Unicode category Cf), and noncharacters. Control characters
/// (Cc) are checked separately.
fn non_printing(c: char) -> Option<&'static str> {
    let n = c as u32;
    Some(match n {
        0x2028 => "line separator",
        0x2029 => "paragraph separator",
        0x200E | 0x200F | 0x061C | 0x202A..=0x202E | 0x2066..=0x2069 => "bidi control",
        0x200B..=0x200D | 0x2060..=0x2064 | 0xFEFF => "zero-width character",
        0x00AD
        | 0x0600..=0x0605
        | 0x06DD
        | 0x070F
        | 0x0890
        | 0x0891
        | 0x08E2
        | 0x180E
        | 0x206A..=0x206F
        | 0xFFF9..=0xFFFB
        | 0x110BD
        | 0x110CD
        | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A
        | 0xE0001
        | 0xE0020..=0xE007F => "format character",
        0xFDD0..=0xFDEF => "noncharacter",
        _ if n & 0xFFFE == 0xFFFE => "noncharacter",
        _ => return None,
    })
}

/// `YYYY-MM-DD` naming a real calendar day RPM can store: rpm refuses bogus
/// changelog dates, and keeps them as u32 seconds since 1970, so a date
/// after [`LAST_RPM_DATE`] would wrap.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return false;
    }
    let num = |r: Range<usize>| s[r].parse::<u32>().unwrap_or(0);
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1970..=9999).contains(&y) && (1..=days).contains(&d) && s <= LAST_RPM_DATE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert!(is_date("2025-08-04"));
        assert!(is_date("2024-02-29"));
        assert!(is_date("1970-01-01"));
        assert!(is_date(LAST_RPM_DATE));
        for bad in [
            "2025-8-4",
            "2025-13-01",
            "2025-02-29",
            "2025-04-31",
            "2025-00-10",
            "0000-01-01",
            "2025/08/04",
            "2106-02-08",
            "2200-01-01",
            "1969-12-31",
        ] {
            assert!(!is_date(bad), "{bad}");
        }
    }

    #[test]
    fn line_col_counts() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\n", 1), (1, 1));
        assert_eq!(line_col("x", 99), (1, 2));
    }
}
