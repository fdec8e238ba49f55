//! What each stage hands the next: one typed output per stage, collected in
//! [`JobArtifacts`] and stored in the job's `state.json`.
//!
//! Stages used to pass a map of string-named paths plus a free JSON value;
//! a name one stage never wrote (or a detail field it renamed) surfaced as a
//! runtime error in a later stage, or not at all. Here each stage returns its
//! own type ([`FetchOutput`], [`PrepareOutput`], [`BuildOutput`],
//! [`SignOutput`], [`PackageOutput`], [`VerifyOutput`]) and later stages read
//! fields: a missing input is a compile error, or an `Option` the reader must
//! decide about.
//!
//! For re-runs the orchestrator still needs the files behind an output (to
//! digest them and to notice one that changed or vanished):
//! [`StageData::files`] lists them, named by the field they came from.

use crate::build::BuildOutput;
use crate::fetch::FetchedKernel;
use crate::prepare::kbuild_targets::BuildTargets;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// fetch: the kernel's packages, verified and cached (and, for Debian,
/// unpacked). The same type `khotfix fetch` prints.
pub type FetchOutput = FetchedKernel;

/// prepare: what the build compiles against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PrepareOutput {
    /// kbuild: the recipe's module source, checked to have a Kbuild/Makefile.
    ModuleSource { dir: PathBuf },
    /// kpatch with `-r SRPM` (EL): vmlinux out of kernel-debuginfo; the
    /// source RPM itself comes from fetch.
    SourceRpm { vmlinux: PathBuf },
    /// kpatch on a prepared tree (Debian): the kernel's shared tree, its
    /// config, and the kbuild targets the patches need.
    KernelTree {
        source: PathBuf,
        config: PathBuf,
        targets: BuildTargets,
    },
}

/// sign: the signed livepatch module (`kpatch-<id>.ko`) and the certificate
/// it was signed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignOutput {
    pub module: PathBuf,
    pub cert: Option<PathBuf>,
}

/// verify: where the report was written (its checks are in the stage's
/// detail for the run report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyOutput {
    pub report: PathBuf,
}

/// package: the signed RPM and the public key it verifies with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackagedRpm {
    pub rpm: PathBuf,
    pub key: PathBuf,
    /// `name-version-release.arch`.
    pub nevra: String,
}

/// One stage's typed output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "lowercase")]
pub enum StageData {
    Fetch(FetchOutput),
    Prepare(PrepareOutput),
    Build(BuildOutput),
    Sign(SignOutput),
    Package(PackagedRpm),
    Verify(VerifyOutput),
}

impl StageData {
    /// The files and directories behind this output, named by field: they
    /// must exist when the stage returns, and their digests are what later
    /// stages see as inputs.
    pub fn files(&self) -> Vec<(&'static str, &Path)> {
        let mut v: Vec<(&'static str, &Path)> = Vec::new();
        match self {
            StageData::Fetch(FetchedKernel::Deb(k)) => {
                v.push(("root", &k.root));
                v.push(("headers_dir", &k.headers_dir));
                if let Some(p) = &k.vmlinuz {
                    v.push(("vmlinuz", p));
                }
                if let Some(p) = &k.modules_dir {
                    v.push(("modules_dir", p));
                }
                if let Some(kp) = &k.kpatch {
                    v.push(("source_deb", &kp.source_deb));
                    v.push(("vmlinux", &kp.vmlinux));
                }
            }
            StageData::Fetch(FetchedKernel::Rpm(k)) => {
                v.push(("source_rpm", &k.source_rpm));
                v.push(("debuginfo_rpm", &k.debuginfo_rpm));
                v.push(("debuginfo_common_rpm", &k.debuginfo_common_rpm));
                v.push(("devel_rpm", &k.devel_rpm));
            }
            StageData::Prepare(PrepareOutput::ModuleSource { dir }) => v.push(("dir", dir)),
            StageData::Prepare(PrepareOutput::SourceRpm { vmlinux }) => {
                v.push(("vmlinux", vmlinux))
            }
            StageData::Prepare(PrepareOutput::KernelTree { source, config, .. }) => {
                v.push(("source", source));
                v.push(("config", config));
            }
            StageData::Build(b) => {
                v.push(("module", &b.module));
                // A build-cache hit compiles nothing and writes no log.
                if !b.cache_hit {
                    v.push(("log", &b.log));
                }
            }
            StageData::Sign(s) => {
                v.push(("module", &s.module));
                if let Some(c) = &s.cert {
                    v.push(("cert", c));
                }
            }
            StageData::Package(p) => {
                v.push(("rpm", &p.rpm));
                v.push(("key", &p.key));
            }
            StageData::Verify(r) => v.push(("report", &r.report)),
        }
        v
    }
}

/// The outputs of a job's finished stages, in one place.
#[derive(Debug, Clone, Default)]
pub struct JobArtifacts {
    pub fetch: Option<FetchOutput>,
    pub prepare: Option<PrepareOutput>,
    pub build: Option<BuildOutput>,
    pub sign: Option<SignOutput>,
    pub package: Option<PackagedRpm>,
    pub verify: Option<VerifyOutput>,
}

impl JobArtifacts {
    pub fn put(&mut self, data: StageData) {
        match data {
            StageData::Fetch(d) => self.fetch = Some(d),
            StageData::Prepare(d) => self.prepare = Some(d),
            StageData::Build(d) => self.build = Some(d),
            StageData::Sign(d) => self.sign = Some(d),
            StageData::Package(d) => self.package = Some(d),
            StageData::Verify(d) => self.verify = Some(d),
        }
    }

    pub fn fetched(&self) -> Result<&FetchOutput> {
        self.fetch
            .as_ref()
            .context("the fetch stage produced no output")
    }

    pub fn prepared(&self) -> Result<&PrepareOutput> {
        self.prepare
            .as_ref()
            .context("the prepare stage produced no output")
    }

    pub fn built(&self) -> Result<&BuildOutput> {
        self.build
            .as_ref()
            .context("the build stage produced no module")
    }

    pub fn signed(&self) -> Result<&SignOutput> {
        self.sign
            .as_ref()
            .context("the sign stage produced no signed module")
    }

    pub fn packaged(&self) -> Result<&PackagedRpm> {
        self.package
            .as_ref()
            .context("the package stage produced no RPM")
    }

    /// The target kernel's boot image and modules tree, as fetch downloaded
    /// them (never the host's own kernel).
    pub fn kernel_image(&self) -> Option<&Path> {
        match &self.fetch {
            Some(FetchedKernel::Deb(k)) => k.vmlinuz.as_deref(),
            _ => None,
        }
    }

    pub fn modules_dir(&self) -> Option<&Path> {
        match &self.fetch {
            Some(FetchedKernel::Deb(k)) => k.modules_dir.as_deref(),
            _ => None,
        }
    }
}
