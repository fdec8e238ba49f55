//! Distribution definitions: where a distro's kernel packages live, which
//! builder container builds for it, its RPM dist tag and the kpatch-build
//! flags it needs. Built-in definitions are data files under `src/distros/`.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

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
    /// Builder container name under `containers/`.
    pub builder: String,
    pub arch: String,
    pub kpatch_mode: KpatchMode,
    #[serde(default)]
    pub kpatch_flags: Vec<String>,
    #[serde(default)]
    pub repos: Vec<RepoDef>,
    /// Debian: the metapackage whose dependency names the current kernel.
    #[serde(default)]
    pub apt_metapackage: Option<String>,
}

const BUILTIN: &[(&str, &str)] = &[
    ("centos7", include_str!("distros/centos7.toml")),
    ("alinux3", include_str!("distros/alinux3.toml")),
    ("debian12", include_str!("distros/debian12.toml")),
];

impl Distro {
    /// Names of the built-in distros.
    pub fn names() -> Vec<&'static str> {
        BUILTIN.iter().map(|(n, _)| *n).collect()
    }

    /// Load a built-in distro definition by name.
    pub fn builtin(name: &str) -> Result<Distro> {
        let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name) else {
            bail!(
                "unknown distro {name:?} (known: {})",
                Self::names().join(", ")
            );
        };
        let d: Distro = toml::from_str(text).with_context(|| format!("built-in distro {name}"))?;
        Ok(d)
    }

    /// Does a kernel of this flavour belong to this distro?
    pub fn owns(&self, kernel: &crate::kernel::KernelRelease) -> bool {
        self.dists.iter().any(|d| *d == kernel.flavor.name())
    }

    /// kpatch-build flags this distro needs for `kernel`, beyond the mode's
    /// own `-r` or `-s/-c/-v`.
    pub fn kpatch_flags_for(&self, kernel: &crate::kernel::KernelRelease) -> Vec<String> {
        let mut flags = self.kpatch_flags.clone();
        // -R (non-replace) is only meaningful for the 3.10.0 el7 kpatch core.
        if !(kernel.version == "3.10.0" && kernel.flavor == crate::kernel::Flavor::El(7)) {
            flags.retain(|f| f != "-R" && f != "--non-replace");
        }
        flags
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
