//! Stage: package. Turns one signed livepatch module into the RPM hosts
//! install, shaped like the vendor's hotfix packages (seed 000):
//!
//! ```text
//! kernel-hotfix-22519882-5.10.134-18-1.0-20250804154834.al8.x86_64.rpm
//!   /var/khotfix/5.10.134-18.al8.x86_64/22519882/kpatch-22519882.ko
//!   /var/khotfix/5.10.134-18.al8.x86_64/22519882/{patch,description,changeinfo}
//! ```
//!
//! Name `kernel-hotfix-<id>-<kernel version-release>`, version from the
//! recipe, release `<UTC YYYYMMDDhhmmss>.<rpm_dist>`, arch of the kernel,
//! `Requires: kpatch >= 0.8`, on rpm-family distros `Requires:
//! kernel-uname-r = <uname -r>` ([`kernel_requirement`]), `Provides:
//! kernel-hotfix = <uname -r>`, scriptlets from [`scriptlets`], payload xz or
//! gzip (EL7's rpm 4.11 cannot read zstd), header-only and header+payload
//! OpenPGP signatures ([`sigheader`]). With `SOURCE_DATE_EPOCH` set, the
//! release timestamp, build time, file times, changelog and signature times
//! all derive from it, so equal inputs give byte-identical packages.

pub mod keydb;
pub mod node_rpm;
pub mod scriptlets;
pub mod sigheader;

use crate::distro::Distro;
use crate::kernel::KernelRelease;
use crate::keys::PackageSigner;
use crate::recipe::{Backend, Hotfix, Recipe};
use crate::util::validate;
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The minimum kpatch the scriptlets need (`kpatch install -k`).
pub const KPATCH_MIN_VERSION: &str = "0.8";

/// Payload compression. zstd is deliberately absent: EL7's rpm cannot read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Xz,
    Gzip,
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "xz" => Ok(Compression::Xz),
            "gzip" | "gz" => Ok(Compression::Gzip),
            "zstd" => Err("zstd payloads cannot be read by EL7's rpm; use xz or gzip".into()),
            o => Err(format!(
                "unknown payload compression {o:?} (use xz or gzip)"
            )),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Xz => "xz",
            Compression::Gzip => "gzip",
        })
    }
}

/// How packages are built (not what goes in them).
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub compression: Compression,
    /// Seconds since the epoch used for the release timestamp, build time,
    /// file times and signature times. `None`: now.
    pub source_date_epoch: Option<u64>,
}

impl BuildOptions {
    /// xz, and `SOURCE_DATE_EPOCH` from the environment when set.
    pub fn from_env() -> Result<Self> {
        let sde = match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if !v.trim().is_empty() => Some(
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| anyhow!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))?,
            ),
            _ => None,
        };
        Ok(BuildOptions {
            compression: Compression::Xz,
            source_date_epoch: sde,
        })
    }
}

/// Everything one package is made of. The build stage's output is turned into
/// this (see [`inputs_from_build_dir`]); callers may also fill it directly.
#[derive(Debug, Clone)]
pub struct PackageInput {
    pub hotfix: Hotfix,
    pub kernel: KernelRelease,
    /// Supplies the RPM dist tag (`al8`, `el7`) and the default arch.
    pub distro: Distro,
    /// The signed `kpatch-<id>.ko`.
    pub ko_path: PathBuf,
    /// The source patch, shipped as `patch` beside the module.
    pub patch: String,
}

impl PackageInput {
    /// The package of `target`'s signed module for `kernel`.
    pub fn for_target(
        recipe: &Recipe,
        target: &crate::recipe::Target,
        kernel: &KernelRelease,
        distro: &Distro,
        ko_path: &Path,
    ) -> Result<PackageInput> {
        Ok(PackageInput {
            hotfix: recipe.hotfix.clone(),
            kernel: kernel.clone(),
            distro: distro.clone(),
            ko_path: ko_path.to_path_buf(),
            patch: patch_text(target)?,
        })
    }
}

/// What [`build_rpm`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct PackageOutput {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub release: String,
    pub arch: String,
    /// `name-version-release.arch`.
    pub nevra: String,
    pub kernel: KernelRelease,
    /// Installed paths.
    pub files: Vec<String>,
    pub sha256: String,
    pub size: u64,
    pub signed_by: String,
}

/// The RPM arch for a kernel: its own arch, Debian names mapped to rpm's.
pub fn rpm_arch(kernel: &KernelRelease, distro: &Distro) -> Result<String> {
    let a = kernel.arch.as_deref().unwrap_or(&distro.arch);
    let mapped = match a {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "686" | "686-pae" => "i686",
        "powerpc64le" => "ppc64le",
        other => other,
    };
    validate::package_token("arch", mapped).map_err(|e| anyhow!(e))?;
    Ok(mapped.to_string())
}

/// Every hotfix provides `kernel-hotfix = <uname -r>`, so a host can ask
/// which hotfixes it has for a kernel (`rpm -q --whatprovides`).
pub const KERNEL_HOTFIX_PROVIDE: &str = "kernel-hotfix";

/// What a hotfix requires of its kernel. EL and Alibaba Cloud Linux kernel
/// packages provide `kernel-uname-r = <uname -r>`, so on rpm-family distros
/// the hotfix cannot be installed on a host that lacks its kernel. Debian
/// kernels are .deb packages that rpm cannot see: no requirement there.
pub fn kernel_requirement(kernel: &KernelRelease, distro: &Distro) -> Option<rpm::Dependency> {
    match distro.family {
        crate::distro::Family::Rpm => Some(rpm::Dependency::eq("kernel-uname-r", kernel.as_str())),
        _ => None,
    }
}

/// `YYYYMMDDhhmmss` in UTC.
pub fn release_timestamp(epoch: u64) -> Result<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(epoch as i64)
        .map_err(|_| anyhow!("time {epoch} out of range"))?;
    let f = time::macros::format_description!("[year][month][day][hour][minute][second]");
    t.format(&f).map_err(|e| anyhow!("formatting time: {e}"))
}

fn now_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `changeinfo`: what changed, for the people on the host.
fn changeinfo(input: &PackageInput) -> String {
    let h = &input.hotfix;
    let mut s = format!(
        "hotfix: {}\nname: {}\nsummary: {}\nversion: {}\nkernel: {}\nmodule: {}\n",
        h.id,
        h.name,
        h.summary,
        h.version,
        input.kernel,
        h.module_name()
    );
    if !h.changelog.is_empty() {
        s.push_str("\nchangelog:\n");
        for c in &h.changelog {
            s.push_str(&format!("* {} {}\n", c.date, c.author));
            for line in c.text.lines() {
                s.push_str(&format!("  {line}\n"));
            }
        }
    }
    s
}

fn date_epoch(date: &str) -> Result<u64> {
    let bad = || anyhow!("changelog date {date:?} is not YYYY-MM-DD");
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts[..] else {
        return Err(bad());
    };
    let (y, m, d): (i32, u8, u8) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    let month = time::Month::try_from(m).map_err(|_| bad())?;
    let d = time::Date::from_calendar_date(y, month, d).map_err(|_| bad())?;
    let t = d.midnight().assume_utc().unix_timestamp();
    u64::try_from(t).map_err(|_| anyhow!("changelog date {date:?} is before 1970"))
}

/// Build, sign and write `kernel-hotfix-…rpm` into `out_dir` (atomically;
/// nothing is left behind on error).
pub fn build_rpm(
    input: &PackageInput,
    signer: &PackageSigner,
    out_dir: &Path,
    opts: &BuildOptions,
) -> Result<PackageOutput> {
    let h = &input.hotfix;
    let name = h.package_name(&input.kernel);
    validate::package_token("package name", &name).map_err(|e| anyhow!(e))?;
    validate::package_token("hotfix version", &h.version).map_err(|e| anyhow!(e))?;
    if h.version.contains('-') {
        bail!(
            "hotfix version {:?} must not contain '-' (RPM versions cannot)",
            h.version
        );
    }
    validate::package_token("rpm dist", &input.distro.rpm_dist).map_err(|e| anyhow!(e))?;
    let arch = rpm_arch(&input.kernel, &input.distro)?;
    let t = opts.source_date_epoch.unwrap_or_else(now_epoch);
    let release = format!("{}.{}", release_timestamp(t)?, input.distro.rpm_dist);
    let ts = rpm::Timestamp(u32::try_from(t).context("SOURCE_DATE_EPOCH past 2106")?);

    let module = std::fs::read(&input.ko_path)
        .with_context(|| format!("reading module {}", input.ko_path.display()))?;
    if !module.starts_with(b"\x7fELF") {
        bail!("{} is not an ELF kernel module", input.ko_path.display());
    }
    if crate::sign::find_signature(&module)
        .with_context(|| input.ko_path.display().to_string())?
        .is_none()
    {
        bail!(
            "{} is not signed; run `khotfix sign` first",
            input.ko_path.display()
        );
    }

    let dir = scriptlets::install_dir(h, &input.kernel);
    validate::host_path("install directory", &dir).map_err(|e| anyhow!(e))?;
    let ko = format!("{dir}/{}", h.module_file());
    let scripts = scriptlets::generate(h, &input.kernel)?;

    let summary = format!(
        "{} (hotfix {} for kernel {})",
        h.summary, h.id, input.kernel
    );
    let compression = match opts.compression {
        Compression::Xz => rpm::CompressionType::Xz,
        Compression::Gzip => rpm::CompressionType::Gzip,
    };
    let config = rpm::BuildConfig::default()
        .compression(compression)
        .source_date(ts);
    let mut b = rpm::PackageBuilder::new(&name, &h.version, "GPL-2.0-only", &arch, &summary);
    b.using_config(config)
        .release(&release)
        .description(format!(
            "{}\n\nLivepatch module {} for kernel {}.",
            h.description.trim_end(),
            h.module_name(),
            input.kernel
        ))
        .group("System Environment/Kernel")
        .vendor("khotfix")
        .packager("khotfix")
        .build_host("khotfix")
        .requires(rpm::Dependency::greater_eq("kpatch", KPATCH_MIN_VERSION))
        .provides(rpm::Dependency::eq(
            KERNEL_HOTFIX_PROVIDE,
            input.kernel.as_str(),
        ))
        .post_install_script(scripts.post.clone())
        .post_trans_script(scripts.posttrans.clone())
        .pre_uninstall_script(scripts.preun.clone());
    if let Some(dep) = kernel_requirement(&input.kernel, &input.distro) {
        b.requires(dep);
    }
    let file = |p: &str| rpm::FileOptions::new(p).permissions(0o644);
    b.with_file_contents(module, file(&ko))
        .context("adding the module")?;
    b.with_file_contents(
        input.patch.clone().into_bytes(),
        file(&format!("{dir}/patch")),
    )?;
    b.with_file_contents(
        format!("{}\n", h.description.trim_end()).into_bytes(),
        file(&format!("{dir}/description")),
    )?;
    b.with_file_contents(
        changeinfo(input).into_bytes(),
        file(&format!("{dir}/changeinfo")),
    )?;
    b.with_dir_entry(rpm::FileOptions::dir(&dir).permissions(0o755))?;
    for c in &h.changelog {
        b.add_changelog_entry(
            &c.author,
            format!("- {}", c.text.trim()),
            rpm::Timestamp(date_epoch(&c.date)? as u32),
        );
    }
    let mut pkg = b.build().map_err(|e| anyhow!("building {name}: {e}"))?;
    sigheader::sign_package(&mut pkg, signer, t)?;

    let nevra = format!("{name}-{}-{release}.{arch}", h.version);
    let path = out_dir.join(format!("{nevra}.rpm"));
    let mut bytes = Vec::new();
    pkg.write(&mut bytes)
        .map_err(|e| anyhow!("serializing {name}: {e}"))?;
    crate::util::fsx::write_atomic(&path, &bytes)?;
    use sha2::Digest;
    Ok(PackageOutput {
        sha256: hex::encode(sha2::Sha256::digest(&bytes)),
        size: bytes.len() as u64,
        path,
        name,
        version: h.version.clone(),
        release,
        arch,
        nevra,
        kernel: input.kernel.clone(),
        files: vec![
            ko,
            format!("{dir}/patch"),
            format!("{dir}/description"),
            format!("{dir}/changeinfo"),
        ],
        signed_by: signer.fingerprint.clone(),
    })
}

/// The build stage's output, as this stage reads it:
/// `<build_dir>/<job id>/kpatch-<id>.ko` with job id
/// `<hotfix id>-<target>-<kernel release>` (see `plan::Job`). Only kernels
/// of the recipe's targets are taken; `only` narrows to one kernel.
pub fn inputs_from_build_dir(
    recipe: &Recipe,
    build_dir: &Path,
    only: Option<&KernelRelease>,
) -> Result<Vec<PackageInput>> {
    let h = &recipe.hotfix;
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(build_dir).with_context(|| format!("reading {}", build_dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    for t in &recipe.targets {
        let prefix = format!("{}-{}-", h.id, t.name);
        for n in names.iter().filter(|n| n.starts_with(&prefix)) {
            let Ok(kernel) = KernelRelease::parse(&n[prefix.len()..]) else {
                continue;
            };
            if only.is_some_and(|o| *o != kernel) {
                continue;
            }
            let ko_path = build_dir.join(n).join(h.module_file());
            if !ko_path.is_file() {
                bail!(
                    "{} is missing (the build for {} did not produce a module)",
                    ko_path.display(),
                    kernel
                );
            }
            let distro = Distro::builtin(&t.distro)?;
            out.push(PackageInput::for_target(
                recipe, t, &kernel, &distro, &ko_path,
            )?);
        }
    }
    Ok(out)
}

/// The text shipped as `patch`: the target's diffs, or for a hand-written
/// (kbuild) module its C sources.
fn patch_text(t: &crate::recipe::Target) -> Result<String> {
    let mut files: Vec<PathBuf> = t.patches.clone();
    if t.backend == Backend::Kbuild && files.is_empty() {
        if let Some(dir) = &t.module_source {
            let mut srcs: Vec<PathBuf> = walkdir::WalkDir::new(dir)
                .into_iter()
                .filter_map(|e| e.ok())
                .map(|e| e.into_path())
                .filter(|p| p.extension().is_some_and(|x| x == "c" || x == "h"))
                .collect();
            srcs.sort();
            files = srcs;
        }
    }
    let mut s = String::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        if !s.is_empty() {
            s.push('\n');
        }
        s.push_str(&text);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_and_release() {
        let d = Distro::builtin("debian12").unwrap();
        let k = KernelRelease::parse("6.1.0-56-amd64").unwrap();
        assert_eq!(rpm_arch(&k, &d).unwrap(), "x86_64");
        assert_eq!(release_timestamp(1754322514).unwrap(), "20250804154834");
        assert!("zstd".parse::<Compression>().unwrap_err().contains("EL7"));
    }
}
