//! The `khotfix-node` RPM: the node agent for hosts, published into the same
//! signed repository as the hotfixes, so a host needs `dnf install
//! khotfix-node` (and `systemctl enable --now khotfix-node.timer`).
//!
//! ```text
//! khotfix-node-<version>-<UTC YYYYMMDDhhmmss>.<rpm_dist>.x86_64.rpm
//!   /usr/bin/khotfix-node                          the static binary
//!   /usr/lib/systemd/system/khotfix-node.service   `khotfix-node run $KHOTFIX_NODE_ARGS`
//!   /usr/lib/systemd/system/khotfix-node.timer     hourly, spread over 10 min
//!   /etc/khotfix/node.conf                         %config(noreplace): the run's arguments
//!   /etc/khotfix/recipes/<name>.toml               %config(noreplace): the recipes
//! ```
//!
//! The release carries the distro's dist tag, so `khotfix publish` puts the
//! package in that distro's part of the repository (see
//! `publish::layout`). No scriptlets: the package installs files only, and
//! the operator (or a preset) enables the timer. Every recipe is loaded as
//! a node loads it before it is packaged: a recipe the agent would refuse
//! is refused here, naming the file.

use super::{release_timestamp, BuildOptions};
use crate::keys::PackageSigner;
use crate::util::validate;
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

pub const NODE_PACKAGE: &str = "khotfix-node";
pub const BINARY_PATH: &str = "/usr/bin/khotfix-node";
pub const SERVICE_PATH: &str = "/usr/lib/systemd/system/khotfix-node.service";
pub const TIMER_PATH: &str = "/usr/lib/systemd/system/khotfix-node.timer";
pub const CONF_PATH: &str = "/etc/khotfix/node.conf";
pub const SERVICE: &str = include_str!("node_units/khotfix-node.service");
pub const TIMER: &str = include_str!("node_units/khotfix-node.timer");
pub const CONF: &str = include_str!("node_units/node.conf");

/// What goes into the package.
#[derive(Debug, Clone)]
pub struct NodePackageInput {
    /// The `khotfix-node` binary (built with `--profile node`, static for
    /// hosts whose glibc is older than the build machine's).
    pub binary: PathBuf,
    /// Recipes installed as `/etc/khotfix/recipes/<file name>`.
    pub recipes: Vec<PathBuf>,
    pub version: String,
    /// The dist tag (`al8`): the repository part the package goes to.
    pub rpm_dist: String,
    pub arch: String,
}

/// The path a recipe is installed at (its file name must be a plain
/// `<name>.toml`).
fn installed_path(recipe: &Path) -> Result<String> {
    let name = recipe
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.len() > 5 && n.ends_with(".toml"))
        .ok_or_else(|| anyhow!("{}: a recipe file name must end in .toml", recipe.display()))?;
    validate::package_token("recipe file name", name).map_err(|e| anyhow!(e))?;
    Ok(format!("{}/{name}", crate::node::check::RECIPES_DIR))
}

/// Build and sign the package into `out_dir` (atomically). Returns its path.
pub fn build_node_rpm(
    input: &NodePackageInput,
    signer: &PackageSigner,
    out_dir: &Path,
    opts: &BuildOptions,
) -> Result<PathBuf> {
    for (what, v) in [
        ("version", &input.version),
        ("rpm dist", &input.rpm_dist),
        ("arch", &input.arch),
    ] {
        validate::package_token(what, v).map_err(|e| anyhow!(e))?;
    }
    if input.version.contains('-') {
        bail!("version {:?} must not contain '-'", input.version);
    }
    let binary = std::fs::read(&input.binary)
        .with_context(|| format!("reading {}", input.binary.display()))?;
    if !binary.starts_with(b"\x7fELF") {
        bail!("{} is not an ELF executable", input.binary.display());
    }
    let mut recipes = Vec::new();
    for r in &input.recipes {
        let path = installed_path(r)?;
        if recipes.iter().any(|(p, _)| *p == path) {
            bail!("{}: two recipes would be installed as {path}", r.display());
        }
        crate::node::check::load_recipe(r)?;
        let text = std::fs::read(r).with_context(|| format!("reading {}", r.display()))?;
        recipes.push((path, text));
    }
    let t = opts.source_date_epoch.unwrap_or_else(super::now_epoch);
    let release = format!("{}.{}", release_timestamp(t)?, input.rpm_dist);
    let ts = rpm::Timestamp(u32::try_from(t).context("SOURCE_DATE_EPOCH past 2106")?);
    let config = rpm::BuildConfig::default()
        .compression(match opts.compression {
            super::Compression::Xz => rpm::CompressionType::Xz,
            super::Compression::Gzip => rpm::CompressionType::Gzip,
        })
        .source_date(ts);
    let mut b = rpm::PackageBuilder::new(
        NODE_PACKAGE,
        &input.version,
        "Apache-2.0",
        &input.arch,
        "khotfix node agent: which hotfixes this host needs, metrics, periodic runs",
    );
    b.using_config(config)
        .release(&release)
        .description(
            "khotfix-node checks the hotfix recipes in /etc/khotfix/recipes against the\n\
             running kernel (khotfix-node check|status), applies them (apply), and, from\n\
             khotfix-node.timer, writes node_exporter textfile metrics (run).",
        )
        .group("System Environment/Base")
        .vendor("khotfix")
        .packager("khotfix")
        .build_host("khotfix");
    let file = |p: &str, mode: u16| rpm::FileOptions::new(p).permissions(mode);
    let config_file = |p: &str| {
        rpm::FileOptions::new(p)
            .permissions(0o644)
            .config()
            .noreplace()
    };
    b.with_file_contents(binary, file(BINARY_PATH, 0o755))
        .context("adding the binary")?;
    b.with_file_contents(SERVICE.as_bytes().to_vec(), file(SERVICE_PATH, 0o644))?;
    b.with_file_contents(TIMER.as_bytes().to_vec(), file(TIMER_PATH, 0o644))?;
    b.with_file_contents(CONF.as_bytes().to_vec(), config_file(CONF_PATH))?;
    b.with_dir_entry(rpm::FileOptions::dir("/etc/khotfix").permissions(0o755))?;
    b.with_dir_entry(rpm::FileOptions::dir(crate::node::check::RECIPES_DIR).permissions(0o755))?;
    for (path, text) in recipes {
        b.with_file_contents(text, config_file(&path))?;
    }
    let mut pkg = b
        .build()
        .map_err(|e| anyhow!("building {NODE_PACKAGE}: {e}"))?;
    super::sigheader::sign_package(&mut pkg, signer, t)?;
    let nevra = format!("{NODE_PACKAGE}-{}-{release}.{}", input.version, input.arch);
    let path = out_dir.join(format!("{nevra}.rpm"));
    let mut bytes = Vec::new();
    pkg.write(&mut bytes)
        .map_err(|e| anyhow!("serializing {NODE_PACKAGE}: {e}"))?;
    crate::util::fsx::write_atomic(&path, &bytes)?;
    Ok(path)
}
