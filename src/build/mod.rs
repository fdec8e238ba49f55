//! Stage: build. From a job's kernel inputs (fetch/prepare stages) and the
//! recipe's patch or livepatch module source to `kpatch-<id>.ko`, built in a
//! builder container that matches the target distro.
//!
//! - [`container`]: podman/docker abstraction (run, timeout, Ctrl-C, logs).
//! - [`builder`]: builder images from `containers/<name>/`.
//! - [`kbuild`]: hand-written livepatch module source compiled with kbuild.
//! - [`kpatch`]: kpatch-build with the flags each distro needs.
//! - [`cache`]: finished modules keyed by the sha256 of every input.
//!
//! Typed input: [`BuildInputs`] (made from fetch's and prepare's outputs by
//! [`crate::run::stages::build_inputs`]); typed output: [`BuildOutput`].

pub mod builder;
pub mod cache;
pub mod container;
pub mod kbuild;
pub mod kpatch;
pub mod kpatch_source;
pub mod memo;
/// The `.modinfo` reader shared by build, verify and node.
pub use crate::modinfo;

use crate::distro::Distro;
use crate::plan::Job;
use crate::progress::Reporter;
use crate::recipe::Backend;
use anyhow::{bail, Context, Result};
use cache::{BuildCache, KeyBuilder};
use container::Engine;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The target kernel as the build needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum KernelInputs {
    /// Devel headers for kbuild: `root` is an extracted file system holding
    /// `usr/src/<kdir>` (Debian: linux-headers-<abi>-{amd64,common}, plus
    /// `usr/lib/linux-kbuild-*`; RPM: kernel-devel's `usr/src/kernels/<kver>`).
    /// The host's `/` works too when the headers are installed there.
    Headers { root: PathBuf, kdir: String },
    /// kpatch-build `-r SRPM` (distros kpatch-build knows), vmlinux from kernel-debuginfo.
    Srpm { srpm: PathBuf, vmlinux: PathBuf },
    /// kpatch-build `-s SRCDIR -c CONFIG -v VMLINUX` on a tree the prepare
    /// stage made; `targets` are module-only kbuild targets (`-t`, see
    /// [`crate::prepare::kbuild_targets`]); empty means `vmlinux modules`.
    PreparedTree {
        source: PathBuf,
        config: PathBuf,
        vmlinux: PathBuf,
        #[serde(default)]
        targets: Vec<String>,
    },
}

/// Everything one job's build consumes.
#[derive(Debug, Clone, Serialize)]
pub struct BuildInputs {
    pub job: Job,
    pub kernel: KernelInputs,
    /// `(package file name, sha256)` of each kernel package the inputs came
    /// from, as the fetch stage verified them. When empty, the input files
    /// and trees themselves are hashed for the cache key.
    pub kernel_digests: Vec<(String, String)>,
    /// Source diffs (kpatch backend), in order.
    pub patches: Vec<PathBuf>,
    /// Livepatch module source directory (kbuild backend).
    pub module_source: Option<PathBuf>,
    pub skip_compiler_check: bool,
}

/// How builds run.
#[derive(Debug, Clone)]
pub struct BuildSettings {
    /// Modules go to `<out_dir>/<job id>/kpatch-<id>.ko`.
    pub out_dir: PathBuf,
    /// Per-job scratch (`<work_dir>/<job id>-<key>/`), kpatch CACHEDIRs, ccache.
    pub work_dir: PathBuf,
    /// Per-job logs (`<log_dir>/<job id>.log`).
    pub log_dir: PathBuf,
    /// `make -j` / `kpatch-build -j` inside the container.
    pub make_jobs: usize,
    pub timeout: Option<Duration>,
    pub cache: Option<BuildCache>,
    /// Use this image instead of the distro's builder (tests, custom builders).
    pub image: Option<String>,
    /// A host executable mounted over kpatch-build in the container (the
    /// test stand-in); `None` runs the image's own kpatch-build.
    pub kpatch_build: Option<PathBuf>,
}

/// What a build backend gets for one job: the inputs, the builder image to
/// run in, a scratch directory of its own and the log to append to.
#[derive(Clone, Copy)]
pub struct BackendRun<'a> {
    pub engine: &'a Engine,
    pub inputs: &'a BuildInputs,
    pub distro: &'a Distro,
    /// Builder image tag.
    pub image: &'a str,
    /// Scratch directory for this job and these inputs (locked).
    pub work: &'a Path,
    pub log: &'a Path,
    pub settings: &'a BuildSettings,
    pub progress: &'a dyn Reporter,
}

/// A finished job.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct BuildOutput {
    pub job: String,
    pub backend: Backend,
    pub kernel: String,
    /// `<out_dir>/<job id>/kpatch-<id>.ko`.
    pub module: PathBuf,
    /// `kpatch_<id>`.
    pub module_name: String,
    pub cache_hit: bool,
    pub cache_key: String,
    pub image: String,
    pub log: PathBuf,
    pub seconds: f64,
}

fn hotfix_module_file(job: &Job) -> String {
    crate::recipe::names::module_file(job.hotfix_id)
}

fn hotfix_module_name(job: &Job) -> String {
    crate::recipe::names::module_name(job.hotfix_id)
}

/// Check that inputs fit the job's backend and exist, before any container starts.
pub fn check_inputs(inp: &BuildInputs) -> Result<()> {
    let id = &inp.job.id;
    crate::util::validate::package_token("job id", id).map_err(|e| anyhow::anyhow!(e))?;
    let need_file = |what: &str, p: &Path| -> Result<()> {
        if !p.is_file() {
            bail!("job {id}: {what} {} is not a file", p.display());
        }
        Ok(())
    };
    let need_dir = |what: &str, p: &Path| -> Result<()> {
        if !p.is_dir() {
            bail!("job {id}: {what} {} is not a directory", p.display());
        }
        Ok(())
    };
    match (inp.job.backend, &inp.kernel) {
        (Backend::Kbuild, KernelInputs::Headers { root, kdir }) => {
            crate::util::validate::relative_path("kernel headers dir", kdir)
                .map_err(|e| anyhow::anyhow!("job {id}: {e}"))?;
            need_dir("kernel headers", &root.join("usr/src").join(kdir))?;
            let src = inp.module_source.as_ref().with_context(|| {
                format!("job {id}: kbuild backend needs the recipe's module_source")
            })?;
            need_dir("module source", src)?;
        }
        (Backend::Kpatch, KernelInputs::Srpm { srpm, vmlinux }) => {
            need_file("source RPM", srpm)?;
            need_file("vmlinux", vmlinux)?;
        }
        (
            Backend::Kpatch,
            KernelInputs::PreparedTree {
                source,
                config,
                vmlinux,
                targets,
            },
        ) => {
            for t in targets {
                crate::util::validate::relative_path("kbuild target", t)
                    .map_err(|e| anyhow::anyhow!("job {id}: {e}"))?;
            }
            need_dir("prepared kernel tree", source)?;
            need_file("kernel config", config)?;
            need_file("vmlinux", vmlinux)?;
        }
        (b, k) => bail!(
            "job {id}: backend {b} cannot use {} kernel inputs",
            match k {
                KernelInputs::Headers { .. } => "headers",
                KernelInputs::Srpm { .. } => "source-RPM",
                KernelInputs::PreparedTree { .. } => "prepared-tree",
            }
        ),
    }
    if inp.job.backend == Backend::Kpatch {
        if inp.patches.is_empty() {
            bail!("job {id}: kpatch backend needs at least one patch");
        }
        for p in &inp.patches {
            need_file("patch", p)?;
        }
    }
    Ok(())
}

/// kpatch inputs must fit the distro's kpatch mode (`-r` vs `-s/-c/-v`).
pub fn check_mode(inp: &BuildInputs, distro: &Distro) -> Result<()> {
    use crate::distro::KpatchMode;
    let fits = match (&inp.kernel, distro.kpatch_mode) {
        (KernelInputs::Headers { .. }, _) => true,
        (KernelInputs::Srpm { .. }, m) => m == KpatchMode::Srpm,
        (KernelInputs::PreparedTree { .. }, m) => m == KpatchMode::PreparedTree,
    };
    if !fits {
        bail!(
            "job {}: distro {} uses kpatch mode {:?}, which these kernel inputs do not fit",
            inp.job.id,
            distro.name,
            distro.kpatch_mode
        );
    }
    Ok(())
}

/// The cache key of a job: every input that can change the module.
pub fn cache_key(inp: &BuildInputs, distro: &Distro, image_id: &str) -> Result<String> {
    let mut k = KeyBuilder::new();
    k.field("backend", &inp.job.backend.to_string())
        .field("distro", &distro.name)
        .field("kernel", inp.job.kernel.as_str())
        .field("module", &hotfix_module_file(&inp.job))
        .field("image", image_id)
        .field(
            "skip_compiler_check",
            if inp.skip_compiler_check { "1" } else { "0" },
        );
    if inp.job.backend == Backend::Kpatch {
        k.field(
            "kpatch_flags",
            &kpatch::fixed_flags(distro, &inp.job, inp.skip_compiler_check).join("\0"),
        );
    }
    k.field(
        "kernel_inputs",
        match &inp.kernel {
            KernelInputs::Headers { .. } => "headers",
            KernelInputs::Srpm { .. } => "srpm",
            KernelInputs::PreparedTree { .. } => "prepared-tree",
        },
    );
    let mut digests = inp.kernel_digests.clone();
    digests.sort();
    if digests.is_empty() {
        match &inp.kernel {
            KernelInputs::Headers { root, kdir } => {
                k.field("kdir", kdir);
                for d in kbuild::header_dirs(root, kdir)? {
                    k.tree("headers", &d)?;
                }
            }
            KernelInputs::Srpm { srpm, vmlinux } => {
                k.file("srpm", srpm)?.file("vmlinux", vmlinux)?;
            }
            KernelInputs::PreparedTree {
                source,
                config,
                vmlinux,
                ..
            } => {
                k.tree("source", source)?
                    .file("config", config)?
                    .file("vmlinux", vmlinux)?;
            }
        }
    } else {
        for (name, d) in &digests {
            k.field("package", name).field("sha256", d);
        }
    }
    if let KernelInputs::PreparedTree { targets, .. } = &inp.kernel {
        k.field("targets", &targets.join("\0"));
    }
    for (i, p) in inp.patches.iter().enumerate() {
        k.file(&format!("patch{i}"), p)?;
    }
    if let Some(src) = &inp.module_source {
        k.tree("module_source", src)?;
    }
    Ok(k.finish())
}

/// Build one job (or serve it from the cache).
pub fn build_job(
    engine: &Engine,
    inp: &BuildInputs,
    s: &BuildSettings,
    progress: &dyn Reporter,
) -> Result<BuildOutput> {
    let started = Instant::now();
    check_inputs(inp)?;
    let job = &inp.job;
    let distro = Distro::builtin(&job.distro)?;
    // Whoever owns the nearest existing ancestor of the output directory
    // gets the outputs (matters when running as root for a user).
    check_mode(inp, &distro)?;
    let owner = s
        .out_dir
        .ancestors()
        .find(|p| p.exists())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let image = match &s.image {
        Some(tag) => {
            let id = engine
                .image_id(tag)?
                .with_context(|| format!("image {tag} not found"))?;
            builder::BuilderImage {
                builder: distro.builder.clone(),
                tag: tag.clone(),
                id,
                reused: true,
            }
        }
        None => builder::find(engine, &distro.builder)?,
    };
    progress.status("hashing inputs");
    let key = cache_key(inp, &distro, &image.id)?;
    let log = s.log_dir.join(format!("{}.log", job.id));
    let out_dir = s.out_dir.join(&job.id);
    let module_file = hotfix_module_file(job);
    let dest = out_dir.join(&module_file);
    let output = |cache_hit: bool| BuildOutput {
        job: job.id.clone(),
        backend: job.backend,
        kernel: job.kernel.to_string(),
        module: dest.clone(),
        module_name: hotfix_module_name(job),
        cache_hit,
        cache_key: key.clone(),
        image: image.tag.clone(),
        log: log.clone(),
        seconds: started.elapsed().as_secs_f64(),
    };
    if let Some((cached, _)) = s.cache.as_ref().and_then(|c| c.get(&key)) {
        install_module(&cached, &dest, &owner)?;
        return Ok(output(true));
    }
    std::fs::create_dir_all(&s.log_dir)
        .with_context(|| format!("creating {}", s.log_dir.display()))?;
    std::fs::write(
        &log,
        format!("khotfix build {} (cache key {key})\n", job.id),
    )
    .with_context(|| format!("writing {}", log.display()))?;
    // Scratch per job and inputs; two runs building the same job at once
    // (same id, other output directories) take turns, and the second finds
    // the first one's module in the build cache.
    let work = s.work_dir.join(format!("{}-{}", job.id, &key[..16]));
    let _work_lock = crate::util::fsx::lock_exclusive(&work.with_extension("lock"))?;
    if let Some((cached, _)) = s.cache.as_ref().and_then(|c| c.get(&key)) {
        install_module(&cached, &dest, &owner)?;
        return Ok(output(true));
    }
    let run = BackendRun {
        engine,
        inputs: inp,
        distro: &distro,
        image: &image.tag,
        work: &work,
        log: &log,
        settings: s,
        progress,
    };
    // One arm per backend; a klp-build backend (Linux 6.19+) is one more
    // module with a `run(&BackendRun)` and one more arm.
    let built = match job.backend {
        Backend::Kbuild => kbuild::run(&run)?,
        Backend::Kpatch => kpatch::run(&run)?,
    };
    verify_module(&built, job)?;
    if let Some(c) = &s.cache {
        c.put(&key, &job.id, &built, &image.id)?;
    }
    install_module(&built, &dest, &owner)?;
    container::give_back_as(&log, &owner, 0)?;
    Ok(output(false))
}

/// The module must carry the loaded name `kpatch_<id>` and the target's
/// vermagic, whatever built it.
pub fn verify_module(ko: &Path, job: &Job) -> Result<()> {
    let info = modinfo::read(ko).with_context(|| format!("job {}", job.id))?;
    let want = hotfix_module_name(job);
    match info.get("name") {
        Some(n) if n == want => {}
        other => bail!(
            "job {}: module {} is named {:?}, expected {want}",
            job.id,
            ko.display(),
            other.unwrap_or("(none)")
        ),
    }
    match info.kernel_release() {
        Some(r) if r == job.kernel.as_str() => {}
        other => bail!(
            "job {}: module {} has vermagic for {:?}, expected {}",
            job.id,
            ko.display(),
            other.unwrap_or("(none)"),
            job.kernel
        ),
    }
    if info.get("livepatch") != Some("Y") {
        bail!(
            "job {}: module {} is not a livepatch module (no MODULE_INFO(livepatch, \"Y\"))",
            job.id,
            ko.display()
        );
    }
    Ok(())
}

/// Copy a module into place atomically, mode 0644, owned like `owner`.
fn install_module(from: &Path, dest: &Path, owner: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    crate::util::fsx::write_atomic(dest, &bytes)?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("chmod {}", dest.display()))?;
    if let Some(job_dir) = dest.parent() {
        container::give_back_as(job_dir, owner, 0)?;
    }
    Ok(())
}

/// Build many jobs with at most `parallel` at once; results keep input order.
pub fn build_all(
    engine: &Engine,
    inputs: &[BuildInputs],
    s: &BuildSettings,
    parallel: usize,
    progress: &(dyn Fn(&BuildInputs) -> Box<dyn Reporter> + Sync),
) -> Vec<Result<BuildOutput>> {
    let parallel = parallel.max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<BuildOutput>>>> =
        inputs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..parallel.min(inputs.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(inp) = inputs.get(i) else { break };
                let r = if container::interrupted() {
                    Err(anyhow::anyhow!(
                        "job {}: not started (interrupted)",
                        inp.job.id
                    ))
                } else {
                    let reporter = progress(inp);
                    let r = build_job(engine, inp, s, reporter.as_ref());
                    let how = match &r {
                        Ok(o) if o.cache_hit => "cached".to_string(),
                        Ok(o) => format!("built in {:.0}s", o.seconds),
                        Err(_) => "FAILED".to_string(),
                    };
                    reporter.finish(r.is_ok(), &how);
                    r
                };
                *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_or_else(|| Err(anyhow::anyhow!("job did not run")))
        })
        .collect()
}
