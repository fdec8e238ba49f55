//! Distribution definitions: where a distro's kernel packages live, which
//! builder container builds for it and from what base, where its kernel
//! config is, its RPM dist tag and the kpatch-build flags it needs.
//!
//! Why data: every difference between distros lives in `src/distros/<name>.toml`
//! and is read through methods of [`Distro`], so stage code never tests a
//! distro's name. Built-in definitions are embedded by `build.rs` (every
//! TOML file there, no list in Rust) and parsed once; [`Distro::load`] reads
//! one from a path (tests, trying out a new distro).
//!
//! Adding a distro: write `src/distros/<name>.toml` and, unless it reuses
//! another distro's builder, `containers/<builder>/Containerfile` (plus any
//! files it COPYs). A new *package family* (neither rpm nor deb) is the only
//! change that needs code: one [`Family`] variant and its fetch arm.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Package family: how kernel packages are fetched and unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Rpm,
    Deb,
}

/// How kpatch-build is pointed at the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KpatchMode {
    /// kpatch-build recognises the distro: `-r SRPM`.
    Srpm,
    /// kpatch-build does not: a tree we prepare, `-s SRC -c CONFIG -v VMLINUX`.
    PreparedTree,
}

/// What a repository holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoKind {
    Source,
    Debuginfo,
    Devel,
}

/// One yum repository with its mirrors, tried in turn.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoDef {
    pub name: String,
    pub kind: RepoKind,
    pub mirrors: Vec<String>,
    /// No repodata: packages are fetched by file name under the mirror URL.
    #[serde(default)]
    pub direct: bool,
}

/// How a builder image's base is obtained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuilderBase {
    /// A base image the user names (`--base IMAGE`): vendor images live in
    /// some registry khotfix does not know.
    External,
    /// `mmdebstrap <suite>` with the host's apt sources, then `import`ed:
    /// no registry needed.
    Mmdebstrap(String),
}

/// kpatch-build flags that only apply to kernels of one upstream version.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionFlags {
    /// Upstream kernel version, e.g. `3.10.0`.
    pub kernel_version: String,
    pub flags: Vec<String>,
}

/// A distribution definition (`src/distros/<name>.toml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distro {
    pub name: String,
    pub description: String,
    pub family: Family,
    /// Kernel flavours (dist tags) this distro's kernels carry: `el7`, `al8`, `debian`.
    pub dists: Vec<String>,
    /// Dist tag for our own RPM releases (`20250804154834.al8`).
    pub rpm_dist: String,
    /// Builder container name under `containers/`: the image is
    /// `localhost/khotfix-builder-<builder>:<content hash>`.
    pub builder: String,
    /// Where the builder image's base comes from.
    pub builder_base: BuilderBase,
    /// Whether the builder compiles kpatch-build (its context then also holds
    /// the pinned kpatch source and the carried patches).
    #[serde(default = "yes")]
    pub builder_kpatch: bool,
    pub arch: String,
    pub kpatch_mode: KpatchMode,
    #[serde(default)]
    pub kpatch_flags: Vec<String>,
    /// Extra kpatch-build flags for kernels of one upstream version.
    #[serde(default)]
    pub kpatch_version_flags: Vec<VersionFlags>,
    /// Where the kernel config is, most likely first: `{root}/…` is relative
    /// to the unpacked source RPM (SOURCES) or headers root, `{tree}/…` to the
    /// prepared tree; `{version}`, `{arch}` and `{kver}` are substituted.
    pub kernel_config: Vec<String>,
    #[serde(default)]
    pub repos: Vec<RepoDef>,
    /// Debian: the metapackage whose dependency names the current kernel.
    #[serde(default)]
    pub apt_metapackage: Option<String>,
}

fn yes() -> bool {
    true
}

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}
pub(crate) use embedded::CONTAINER_FILES;

/// The placeholders a `kernel_config` pattern may use.
const CONFIG_PLACEHOLDERS: &[&str] = &["{version}", "{arch}", "{kver}"];

/// The built-in distros, parsed once (sorted by name, as `build.rs` lists them).
fn builtins() -> &'static Result<Vec<Distro>, String> {
    static BUILTINS: OnceLock<Result<Vec<Distro>, String>> = OnceLock::new();
    BUILTINS.get_or_init(|| {
        embedded::DISTRO_FILES
            .iter()
            .map(|(name, text)| {
                let d = Distro::parse(&format!("src/distros/{name}.toml"), text)
                    .map_err(|e| format!("{e:#}"))?;
                if d.name != *name {
                    return Err(format!(
                        "src/distros/{name}.toml: name is {:?}, not the file's name",
                        d.name
                    ));
                }
                Ok(d)
            })
            .collect()
    })
}

impl Distro {
    /// Names of the built-in distros.
    pub fn names() -> Vec<&'static str> {
        embedded::DISTRO_FILES.iter().map(|(n, _)| *n).collect()
    }

    /// Load a built-in distro definition by name.
    pub fn builtin(name: &str) -> Result<Distro> {
        let all = builtins().as_ref().map_err(anyhow::Error::msg)?;
        match all.iter().find(|d| d.name == name) {
            Some(d) => Ok(d.clone()),
            None => bail!(
                "unknown distro {name:?} (known: {})",
                Self::names().join(", ")
            ),
        }
    }

    /// Read a distro definition from a file (not one of the built-ins).
    pub fn load(path: &Path) -> Result<Distro> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parse and check a definition; `origin` names it in errors.
    pub fn parse(origin: &str, text: &str) -> Result<Distro> {
        let d: Distro =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{origin}: {}", e.message()))?;
        d.check().map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        Ok(d)
    }

    fn check(&self) -> Result<(), String> {
        let token = |what: &str, v: &str| -> Result<(), String> {
            if v.is_empty()
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
                || v.starts_with(['.', '-'])
            {
                return Err(format!(
                    "{what} {v:?} must be letters, digits, '.', '_' or '-'"
                ));
            }
            Ok(())
        };
        token("name", &self.name)?;
        token("builder", &self.builder)?;
        token("rpm_dist", &self.rpm_dist)?;
        if self.dists.is_empty() {
            return Err("dists is empty: no kernel would belong to this distro".into());
        }
        if self.kernel_config.is_empty() {
            return Err("kernel_config is empty: the kernel config could not be found".into());
        }
        for p in &self.kernel_config {
            let Some(rest) = p
                .strip_prefix("{root}/")
                .or_else(|| p.strip_prefix("{tree}/"))
            else {
                return Err(format!(
                    "kernel_config path {p:?} must start with {{root}}/ or {{tree}}/"
                ));
            };
            let mut bare = rest.to_string();
            for ph in CONFIG_PLACEHOLDERS {
                bare = bare.replace(ph, "");
            }
            if bare.contains(['{', '}']) || rest.split('/').any(|c| c == "..") {
                return Err(format!(
                    "kernel_config path {p:?}: only {} may be substituted, and no '..'",
                    CONFIG_PLACEHOLDERS.join(", ")
                ));
            }
        }
        if let BuilderBase::Mmdebstrap(suite) = &self.builder_base {
            token("mmdebstrap suite", suite)?;
        }
        Ok(())
    }

    /// Does a kernel of this flavour belong to this distro?
    pub fn owns(&self, kernel: &crate::kernel::KernelRelease) -> bool {
        self.dists.iter().any(|d| *d == kernel.flavor.name())
    }

    /// kpatch-build flags this distro needs for `kernel`, beyond the mode's
    /// own `-r` or `-s/-c/-v`.
    pub fn kpatch_flags_for(&self, kernel: &crate::kernel::KernelRelease) -> Vec<String> {
        let mut flags = self.kpatch_flags.clone();
        for v in &self.kpatch_version_flags {
            if v.kernel_version == kernel.version {
                flags.extend(v.flags.iter().cloned());
            }
        }
        flags
    }

    /// The candidate paths of the kernel config for `kernel`, most likely
    /// first: under `root` (unpacked SRPM SOURCES or a headers root) and,
    /// when given, the prepared `tree`.
    pub fn config_candidates(
        &self,
        kernel: &crate::kernel::KernelRelease,
        arch: &str,
        root: &Path,
        tree: Option<&Path>,
    ) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for p in &self.kernel_config {
            let rel = p
                .replace("{version}", &kernel.version)
                .replace("{arch}", arch)
                .replace("{kver}", kernel.as_str());
            if let Some(r) = rel.strip_prefix("{root}/") {
                out.push(root.join(r));
            } else if let (Some(r), Some(t)) = (rel.strip_prefix("{tree}/"), tree) {
                out.push(t.join(r));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_load() {
        for n in Distro::names() {
            let d = Distro::builtin(n).unwrap();
            assert_eq!(d.name, n);
        }
        assert!(Distro::builtin("nope").is_err());
    }

    #[test]
    fn rpm_distros_name_every_repo_kind_with_usable_mirrors() {
        for n in Distro::names() {
            let d = Distro::builtin(n).unwrap();
            if d.family != Family::Rpm {
                assert!(
                    d.repos.is_empty(),
                    "{n}: deb distros use the machine's apt configuration"
                );
                assert!(d.apt_metapackage.is_some(), "{n}");
                continue;
            }
            for kind in [RepoKind::Source, RepoKind::Debuginfo, RepoKind::Devel] {
                assert!(
                    d.repos.iter().any(|r| r.kind == kind),
                    "{n} has no {kind:?} repository"
                );
            }
            for r in &d.repos {
                assert!(!r.mirrors.is_empty(), "{n}/{}", r.name);
                for m in &r.mirrors {
                    assert!(m.starts_with("https://") || m.starts_with("http://"), "{m}");
                    assert!(
                        m.ends_with('/'),
                        "{m} must end with '/' so file names join onto it"
                    );
                }
            }
        }
    }

    #[test]
    fn el7_gets_non_replace() {
        let d = Distro::builtin("centos7").unwrap();
        let k = crate::kernel::KernelRelease::parse("3.10.0-1062.9.1.el7.x86_64").unwrap();
        assert_eq!(d.kpatch_flags_for(&k), vec!["-R"]);
        assert!(d.owns(&k));
    }
}
