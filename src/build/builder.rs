//! Builder images: `containers/<name>/` (embedded in the binary) built into
//! `localhost/khotfix-builder-<name>:<content hash>`. An image whose tag
//! already exists has the same content and is reused.
//!
//! Which builder a distro uses and how its base is obtained is data in the
//! distro definition (`builder`, `builder_base`): an `mmdebstrap` base needs
//! no container registry (a rootfs made from the host's own apt sources and
//! `import`ed into the engine; the Containerfile is built on top); an
//! `external` base is an image the user names (`--base`), since a vendor
//! image lives in some registry khotfix does not know.

use super::container::Engine;
use crate::progress::Reporter;
use crate::util::proc::process;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub use crate::distro::BuilderBase as Base;
use crate::distro::{Distro, CONTAINER_FILES};

/// A builder definition: its files and how to get its base, from the distro
/// definition (`builder`, `builder_base`, `builder_kpatch`) and the files of
/// `containers/<builder>/` embedded by `build.rs`.
#[derive(Debug, Clone)]
pub struct BuilderDef {
    pub name: String,
    pub base: Base,
    /// (path relative to the build context, contents); the first is the Containerfile.
    pub files: Vec<(&'static str, &'static str)>,
    /// Whether the image compiles kpatch-build: its context then also holds
    /// the pinned kpatch source tarball and [`kpatch_patches`].
    pub kpatch: bool,
}

/// Where khotfix's patches to the pinned kpatch release live under `containers/`.
const KPATCH_PATCH_DIR: &str = "kpatch-patches/";

/// khotfix's patches to the pinned kpatch release, applied in order (by file
/// name) by every builder that compiles kpatch-build
/// (`containers/kpatch-patches/`; each file's header says why it is carried).
pub fn kpatch_patches() -> impl Iterator<Item = (&'static str, &'static str)> {
    CONTAINER_FILES
        .iter()
        .filter(|(p, _)| p.starts_with(KPATCH_PATCH_DIR) && p.ends_with(".patch"))
        .copied()
}

/// Environment variable naming an apt sources file for an mmdebstrap base
/// (default: the host's entries for the suite under /etc/apt).
pub const ENV_DEBIAN_SOURCES: &str = "KHOTFIX_DEBIAN_SOURCES";

/// A builder image ready to run.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BuilderImage {
    pub builder: String,
    /// `localhost/khotfix-builder-<name>:<hash>`.
    pub tag: String,
    /// The engine's image id (part of every build cache key).
    pub id: String,
    /// True when an existing image with the same content was reused.
    pub reused: bool,
}

impl BuilderDef {
    /// The builder of a built-in distro, by builder name.
    pub fn get(name: &str) -> Result<BuilderDef> {
        let owner = Distro::names()
            .into_iter()
            .filter_map(|n| Distro::builtin(n).ok())
            .find(|d| d.builder == name);
        match owner {
            Some(d) => Self::for_distro(&d),
            None => bail!(
                "unknown builder {name:?} (known: {})",
                Self::names().join(", ")
            ),
        }
    }

    /// Names of the built-in distros' builders.
    pub fn names() -> Vec<String> {
        let mut v: Vec<String> = Distro::names()
            .into_iter()
            .filter_map(|n| Distro::builtin(n).ok())
            .map(|d| d.builder)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The builder `distro` names, with its embedded `containers/<builder>/`
    /// files: `Containerfile` first, then the others by path.
    pub fn for_distro(distro: &Distro) -> Result<BuilderDef> {
        let prefix = format!("{}/", distro.builder);
        let mut files: Vec<(&'static str, &'static str)> = CONTAINER_FILES
            .iter()
            .filter_map(|(p, c)| p.strip_prefix(prefix.as_str()).map(|rel| (rel, *c)))
            .collect();
        files.sort_by_key(|(p, _)| (*p != "Containerfile", *p));
        if files.first().map(|(p, _)| *p) != Some("Containerfile") {
            bail!(
                "distro {}: builder {:?} has no containers/{}/Containerfile in this khotfix binary",
                distro.name,
                distro.builder,
                distro.builder
            );
        }
        Ok(BuilderDef {
            name: distro.builder.clone(),
            base: distro.builder_base.clone(),
            files,
            kpatch: distro.builder_kpatch,
        })
    }

    /// Every file of the build context: the builder's own, then (kpatch
    /// builders) the carried kpatch patches.
    pub fn context_files(&self) -> Vec<(&'static str, &'static str)> {
        let mut v = self.files.clone();
        if self.kpatch {
            v.extend(kpatch_patches());
        }
        v
    }

    /// sha256 over the builder's context files and, for kpatch builders, the
    /// pinned kpatch release (the tarball itself is verified against that
    /// pin). An external base is not part of it: rebuild with `--force`
    /// after changing `--base`.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"khotfix-builder-v2\0");
        h.update(self.name.as_bytes());
        if self.kpatch {
            h.update(super::kpatch_source::PINNED.tar_sha256.as_bytes());
        }
        for (p, c) in self.context_files() {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p.as_bytes());
            h.update((c.len() as u64).to_le_bytes());
            h.update(c.as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// The image tag for this content.
    pub fn tag(&self) -> String {
        format!(
            "localhost/khotfix-builder-{}:{}",
            self.name,
            &self.content_hash()[..16]
        )
    }

    /// The tag of the imported mmdebstrap base.
    pub fn base_tag(&self) -> Option<String> {
        match &self.base {
            Base::Mmdebstrap(suite) => {
                Some(format!("localhost/khotfix-base-{}:{suite}", self.name))
            }
            Base::External => None,
        }
    }
}

/// Options of `khotfix builder build`.
#[derive(Debug, Clone, Default)]
pub struct BuildImageOptions {
    /// Base image for builders with an external base.
    pub base: Option<String>,
    /// Rebuild even if an image with the same content exists (and re-create
    /// an mmdebstrap base).
    pub force: bool,
    /// Where `builder-<name>.log` goes.
    pub log_dir: PathBuf,
    /// A local kpatch source tarball (`--kpatch-source`); see
    /// [`super::kpatch_source`] for the other ways it is found.
    pub kpatch_source: Option<PathBuf>,
    /// The cache root (downloaded kpatch release).
    pub cache_dir: PathBuf,
    /// `kpatch_source` from the config file.
    pub config_kpatch_source: Option<PathBuf>,
}

/// The existing image for a builder, or a one-line error saying how to build it.
pub fn find(engine: &Engine, name: &str) -> Result<BuilderImage> {
    let def = BuilderDef::get(name)?;
    let tag = def.tag();
    match engine.image_id(&tag)? {
        Some(id) => Ok(BuilderImage {
            builder: name.into(),
            tag,
            id,
            reused: true,
        }),
        None => bail!("builder image {tag} not found: run `khotfix builder build {name}` first"),
    }
}

/// The builder image, built now if this is its first use. Concurrent jobs
/// (`run -j N`) and processes wait on one lock per builder under the cache
/// directory, so the image is built once; `built` is told before a build
/// starts, so the user knows why the first job takes minutes.
pub fn ensure_on_first_use(
    engine: &Engine,
    name: &str,
    opts: &BuildImageOptions,
    built: &dyn Fn(&str),
) -> Result<BuilderImage> {
    let def = BuilderDef::get(name)?;
    if let Some(id) = engine.image_id(&def.tag())? {
        return Ok(BuilderImage {
            builder: name.into(),
            tag: def.tag(),
            id,
            reused: true,
        });
    }
    built(&format!(
        "builder image {} not found: building it once for all jobs (first use; log: {})",
        def.tag(),
        opts.log_dir.join(format!("builder-{name}.log")).display()
    ));
    let started = std::time::Instant::now();
    let img = ensure(engine, name, opts, &crate::progress::Quiet)?;
    if img.reused {
        // Another job or process built it while this one waited.
        return Ok(img);
    }
    built(&format!(
        "built builder image {} in {:.0} s",
        img.tag,
        started.elapsed().as_secs_f64()
    ));
    Ok(img)
}

/// One lock per builder, held while its image is checked and built, so that
/// concurrent jobs, tests and processes build it once: under the cache
/// directory, or the temporary directory when none is set.
fn image_lock(name: &str, opts: &BuildImageOptions) -> Result<std::fs::File> {
    let dir = if opts.cache_dir.as_os_str().is_empty() {
        std::env::temp_dir()
    } else {
        opts.cache_dir.join("locks")
    };
    crate::util::fsx::lock_exclusive(&dir.join(format!("khotfix-builder-{name}.lock")))
}

/// Build (or reuse) a builder image.
pub fn ensure(
    engine: &Engine,
    name: &str,
    opts: &BuildImageOptions,
    progress: &dyn Reporter,
) -> Result<BuilderImage> {
    let def = BuilderDef::get(name)?;
    let _lock = image_lock(name, opts)?;
    let ext_base = match &def.base {
        Base::External => Some(opts.base.clone().with_context(|| {
            format!("builder {name} needs a base image: pass --base IMAGE (a {name} image from your registry, or one made with `podman import`)")
        })?),
        Base::Mmdebstrap(_) => {
            if opts.base.is_some() {
                bail!("builder {name} makes its own base with mmdebstrap; --base is not used");
            }
            None
        }
    };
    // A tarball named on the command line is checked even when the image
    // exists and it is not needed: a wrong file is an error, not ignored.
    if let (true, Some(p)) = (def.kpatch, &opts.kpatch_source) {
        super::kpatch_source::verify(p, &super::kpatch_source::PINNED)?;
    }
    let tag = def.tag();
    let previous = engine.image_id(&tag)?;
    if !opts.force {
        if let Some(id) = previous.clone() {
            return Ok(BuilderImage {
                builder: name.into(),
                tag,
                id,
                reused: true,
            });
        }
    }
    std::fs::create_dir_all(&opts.log_dir)
        .with_context(|| format!("creating {}", opts.log_dir.display()))?;
    let log = opts.log_dir.join(format!("builder-{name}.log"));
    let _ = std::fs::remove_file(&log);
    let base_image = match (&def.base, ext_base) {
        (Base::External, Some(b)) => b,
        (Base::Mmdebstrap(suite), _) => {
            mmdebstrap_base(engine, &def, suite, opts.force, &log, progress)?
        }
        (Base::External, None) => unreachable!("checked above"),
    };
    let ctx = tempfile::Builder::new()
        .prefix("khotfix-builder-")
        .tempdir()
        .context("creating a build context")?;
    for (p, c) in def.context_files() {
        let dest = ctx.path().join(p);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&dest, c).with_context(|| format!("writing build context file {p}"))?;
    }
    if def.kpatch {
        progress.status(&format!(
            "checking kpatch {}",
            super::kpatch_source::PINNED.tag
        ));
        let src = super::kpatch_source::resolve(
            opts.kpatch_source.as_deref(),
            opts.config_kpatch_source.as_deref(),
            &opts.cache_dir,
        )?;
        std::fs::copy(
            &src.path,
            ctx.path().join(super::kpatch_source::CONTEXT_FILE),
        )
        .with_context(|| format!("copying {} into the build context", src.path.display()))?;
    }
    progress.status(&format!("building {tag}"));
    let args = vec![("BASE".to_string(), base_image)];
    engine.build_image(
        ctx.path(),
        &ctx.path().join("Containerfile"),
        &tag,
        &args,
        &log,
        progress,
    )?;
    let id = engine
        .image_id(&tag)?
        .with_context(|| format!("image {tag} missing right after it was built"))?;
    // A forced rebuild leaves the old image untagged: drop it (ignored if in use).
    if let Some(old) = previous.filter(|old| *old != id) {
        let _ = engine.remove_image(&old);
    }
    Ok(BuilderImage {
        builder: name.into(),
        tag,
        id,
        reused: false,
    })
}

/// The host's apt source files for `suite` (or `$KHOTFIX_DEBIAN_SOURCES`).
pub fn host_apt_sources(suite: &str) -> Result<Vec<PathBuf>> {
    if let Some(p) = std::env::var_os(ENV_DEBIAN_SOURCES).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("{}: {} is not a file", ENV_DEBIAN_SOURCES, p.display());
        }
        return Ok(vec![p]);
    }
    let mut files = Vec::new();
    let main = Path::new("/etc/apt/sources.list");
    let mentions = |p: &Path| {
        std::fs::read_to_string(p)
            .map(|t| {
                t.lines().any(|l| {
                    !l.trim_start().starts_with('#')
                        && l.split_whitespace()
                            .any(|w| w == suite || w.starts_with(&format!("{suite}-")))
                })
            })
            .unwrap_or(false)
    };
    if mentions(main) {
        files.push(main.to_path_buf());
    }
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut extra: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
            .filter(|p| mentions(p))
            .collect();
        extra.sort();
        files.extend(extra);
    }
    if files.is_empty() {
        bail!(
            "no apt sources for {suite} under /etc/apt: set {ENV_DEBIAN_SOURCES} to a sources file"
        );
    }
    Ok(files)
}

fn mmdebstrap_base(
    engine: &Engine,
    def: &BuilderDef,
    suite: &str,
    force: bool,
    log: &Path,
    progress: &dyn Reporter,
) -> Result<String> {
    let tag = def.base_tag().context("builder has no mmdebstrap base")?;
    let previous = engine.image_id(&tag)?;
    if !force && previous.is_some() {
        return Ok(tag);
    }
    let sources = host_apt_sources(suite)?;
    let tmp = tempfile::Builder::new()
        .prefix("khotfix-rootfs-")
        .tempdir()
        .context("creating a rootfs directory")?;
    let tar = tmp.path().join("rootfs.tar");
    progress.status(&format!("mmdebstrap {suite} (host apt sources)"));
    let mut args: Vec<std::ffi::OsString> = vec![
        "--variant=minbase".into(),
        "--format=tar".into(),
        suite.into(),
        tar.clone().into(),
    ];
    args.extend(sources.iter().map(|p| p.into()));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    {
        use std::io::Write;
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        writeln!(f, "$ mmdebstrap {}", shown.join(" "))?;
    }
    let mut mmdebstrap = process("mmdebstrap");
    mmdebstrap.args(&args);
    let status = mmdebstrap
        .command()
        .stdout(f.try_clone()?)
        .stderr(f)
        .stdin(std::process::Stdio::null())
        .status()
        .map_err(|e| mmdebstrap.spawn_error(e))?;
    if !status.success() {
        bail!(
            "mmdebstrap {suite} failed ({status}); see {}",
            log.display()
        );
    }
    engine.import(&tar, &tag, log)?;
    if let (Some(old), Some(new)) = (previous, engine.image_id(&tag)?) {
        if old != new {
            let _ = engine.remove_image(&old);
        }
    }
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_content() {
        let d = BuilderDef::get("debian12").unwrap();
        assert!(d.tag().starts_with("localhost/khotfix-builder-debian12:"));
        let c = BuilderDef::get("centos7").unwrap();
        assert_ne!(c.tag(), d.tag());
        assert!(BuilderDef::get("nope").is_err());
        for n in crate::distro::Distro::names() {
            let d = crate::distro::Distro::builtin(n).unwrap();
            BuilderDef::get(&d.builder).unwrap();
        }
    }
}
