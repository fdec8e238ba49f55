//! Stage: verify. Before a hotfix package is published, prove that what it
//! ships is the right module for the right kernel and that it works:
//!
//! - everywhere ([`checks`]): vermagic equals the target kernel (and, when
//!   the target's modules are at hand, the kernel's own modules' vermagic),
//!   `livepatch: Y`, a PKCS#7 signature trailer (and, with the certificate,
//!   a valid signature), kmod's `modinfo` agrees, `rpm -K` passes with the
//!   repository key in a temporary rpmdb, and the RPM carries the very
//!   module that was checked;
//! - where the target kernel image is available ([`boot`]): boot it under
//!   qemu (TCG), load the objects the patch targets and the module, check
//!   `/sys/kernel/livepatch/<mod>` (`enabled` 1, `transition` 0, every
//!   object `patched` 1), a dmesg without "Call Trace" or "BUG", then
//!   disable and unload.
//!
//! Every check lands in a typed [`VerifyReport`]; a job whose report has a
//! failed check is not published.

pub mod boot;
pub mod checks;
pub mod qemu;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// Not applicable here (e.g. no kernel image for a boot test); does not
    /// block publishing.
    Skip,
}

/// One named check with a one-line message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub outcome: Outcome,
    pub message: String,
}

impl Check {
    pub fn pass(name: &str, message: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            outcome: Outcome::Pass,
            message: message.into(),
        }
    }
    pub fn fail(name: &str, message: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            outcome: Outcome::Fail,
            message: message.into(),
        }
    }
    pub fn skip(name: &str, message: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            outcome: Outcome::Skip,
            message: message.into(),
        }
    }
}

/// Everything verify found for one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub kernel: String,
    pub module: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<PathBuf>,
    pub checks: Vec<Check>,
    /// The guest console of the boot test, when one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_log: Option<PathBuf>,
}

impl VerifyReport {
    /// No check failed (skips are fine).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.outcome != Outcome::Fail)
    }
    pub fn failures(&self) -> Vec<&Check> {
        self.checks
            .iter()
            .filter(|c| c.outcome == Outcome::Fail)
            .collect()
    }
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// What verify looks at for one job.
#[derive(Debug, Clone, Default)]
pub struct VerifyInputs {
    /// `uname -r` of the target kernel.
    pub kernel: String,
    /// The signed livepatch module.
    pub module: PathBuf,
    /// The hotfix RPM and the armored OpenPGP key it is signed with.
    pub rpm: Option<PathBuf>,
    pub rpm_key: Option<PathBuf>,
    /// The X.509 certificate the module was signed with.
    pub module_cert: Option<PathBuf>,
    /// The target kernel's boot image and `/lib/modules/<kernel>` tree.
    pub kernel_image: Option<PathBuf>,
    pub modules_dir: Option<PathBuf>,
    /// Boot the kernel (when the image is available).
    pub boot: bool,
    /// Where to keep the boot console log.
    pub work_dir: Option<PathBuf>,
}

/// Run every applicable check.
pub fn verify(inp: &VerifyInputs) -> Result<VerifyReport> {
    let data = std::fs::read(&inp.module)
        .with_context(|| format!("reading module {}", inp.module.display()))?;
    let mut checks = Vec::new();
    let info = match checks::parse_modinfo(&data) {
        Ok(i) => Some(i),
        Err(e) => {
            checks.push(Check::fail(
                "modinfo-section",
                format!("{}: {e:#}", inp.module.display()),
            ));
            None
        }
    };
    if let Some(info) = &info {
        let reference = inp.modules_dir.as_deref().and_then(reference_vermagic);
        let r = reference.as_ref().map(|(p, v)| (p.as_path(), v.as_str()));
        checks.push(checks::check_vermagic(info, &inp.kernel, r));
        checks.push(checks::check_livepatch_flag(info));
    }
    checks.push(checks::check_signature_trailer(&data));
    if let Some(cert) = &inp.module_cert {
        checks.push(checks::check_signature_crypto(&data, cert));
    }
    checks.push(checks::check_kmod_modinfo(&inp.module, &inp.kernel));
    match (&inp.rpm, &inp.rpm_key) {
        (Some(rpm), Some(key)) => {
            checks.push(checks::check_rpm_signature(rpm, key));
            checks.push(checks::check_rpm_payload(rpm, &inp.module));
        }
        (Some(rpm), None) => {
            checks.push(Check::fail(
                "rpm-signature",
                format!("no repository key to check {} against", rpm.display()),
            ));
            checks.push(checks::check_rpm_payload(rpm, &inp.module));
        }
        (None, _) => {}
    }
    let mut console_log = None;
    let static_ok = checks.iter().all(|c| c.outcome != Outcome::Fail);
    if inp.boot && !static_ok {
        checks.push(Check::skip(
            "boot",
            "not booted: the static checks above failed",
        ));
    } else if inp.boot {
        let loaded_name = info
            .as_ref()
            .and_then(|i| i.get("name"))
            .map(str::to_string);
        match (&inp.kernel_image, &inp.modules_dir) {
            (Some(img), Some(mods)) if img.is_file() && mods.is_dir() => {
                let log = inp.work_dir.as_ref().map(|d| d.join("boot-console.log"));
                let req = boot::BootRequest {
                    kernel_image: img.clone(),
                    modules_dir: mods.clone(),
                    module: inp.module.clone(),
                    module_name: loaded_name.unwrap_or_else(|| module_name_of(&inp.module)),
                    console_log: log.clone(),
                    timeout: std::time::Duration::from_secs(300),
                };
                checks.extend(boot::boot_check(&req, &data));
                console_log = log.filter(|l| l.is_file());
            }
            (Some(img), _) if !img.is_file() => checks.push(Check::skip(
                "boot",
                format!("kernel image {} is not available", img.display()),
            )),
            (None, _) => checks.push(Check::skip(
                "boot",
                format!("no kernel image for {} on this machine", inp.kernel),
            )),
            _ => checks.push(Check::skip(
                "boot",
                format!("no modules tree for {} on this machine", inp.kernel),
            )),
        }
    }
    Ok(VerifyReport {
        kernel: inp.kernel.clone(),
        module: inp.module.clone(),
        rpm: inp.rpm.clone(),
        checks,
        console_log,
    })
}

/// `kpatch-30001.ko` → `kpatch_30001` (what the kernel calls it when the
/// module's own `name` field is missing).
pub fn module_name_of(path: &Path) -> String {
    let f = path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    f.split(".ko").next().unwrap_or(&f).replace('-', "_")
}

/// The vermagic of a module the target kernel itself shipped (any `.ko`
/// under `kernel/`; compressed ones are skipped).
pub fn reference_vermagic(modules_dir: &Path) -> Option<(PathBuf, String)> {
    let candidates = [
        "kernel/net/netfilter/ipvs/ip_vs.ko",
        "kernel/fs/fat/fat.ko",
        "kernel/lib/crc8.ko",
    ];
    let found = candidates
        .iter()
        .map(|c| modules_dir.join(c))
        .find(|p| p.is_file())
        .or_else(|| {
            walkdir::WalkDir::new(modules_dir.join("kernel"))
                .into_iter()
                .filter_map(|e| e.ok())
                .find(|e| {
                    e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "ko")
                })
                .map(|e| e.into_path())
        })?;
    let data = std::fs::read(&found).ok()?;
    let vm = checks::parse_modinfo(&data)
        .ok()?
        .get("vermagic")?
        .to_string();
    Some((found, vm))
}

impl VerifyReport {
    /// "N checks passed[, skipped: …]" for the run report.
    pub fn summary(&self) -> String {
        let passed = self
            .checks
            .iter()
            .filter(|c| c.outcome == Outcome::Pass)
            .count();
        let skipped: Vec<&str> = self
            .checks
            .iter()
            .filter(|c| c.outcome == Outcome::Skip)
            .map(|c| c.name.as_str())
            .collect();
        let mut summary = format!("{passed} checks passed");
        if !skipped.is_empty() {
            summary.push_str(&format!(", skipped: {}", skipped.join(", ")));
        }
        summary
    }

    /// Why the job fails, if a check failed.
    pub fn failure(&self) -> Option<String> {
        let failures = self.failures();
        if failures.is_empty() {
            return None;
        }
        let why: Vec<String> = failures
            .iter()
            .map(|c| format!("{}: {}", c.name, c.message))
            .collect();
        Some(format!("verify failed: {}", why.join("; ")))
    }
}
