//! Stage: fetch. Resolves the packages a kernel build needs from the vendor's
//! own repository metadata (yum) or the machine's apt (Debian), downloads them
//! with verification, and keeps them in a content-addressed cache.
//!
//! Entry points for later stages: [`fetch_job`] / [`fetch_kernel`] return a
//! [`FetchedKernel`] with paths into the cache; [`published_kernels`] lists
//! what a distro's repositories hold (for `plan --from-repos`).
//!
//! Modules: [`repomd`] and [`primary`] parse metadata, [`repo`] is the yum
//! client, [`apt`] the Debian side, [`download`] the HTTP engine (streamed
//! digest, Range resume, retries, mirror failover), [`cache`] the store,
//! progress goes to the options' [`crate::progress::Reporter`].

pub mod apt;
pub mod cache;
pub mod digest;
pub mod download;
pub mod primary;
pub mod repo;
pub mod repomd;

use crate::distro::{Distro, Family};
use crate::kernel::KernelRelease;
use crate::plan::Job;
use crate::progress::{Reporter, SharedReporter};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use cache::Cache;
pub use digest::{Algo, Checksum};
pub use download::{Http, HttpOptions};
pub use repo::Role;

/// Mirror overrides: `REPO=URL[,URL...]` entries separated by whitespace or `;`.
pub const ENV_MIRRORS: &str = "KHOTFIX_MIRRORS";

/// How a fetch runs.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Cache root; `None` means [`Cache::default_root`] (env, XDG, HOME).
    pub cache_dir: Option<PathBuf>,
    pub http: HttpOptions,
    /// Where download progress goes (default: nowhere).
    pub reporter: SharedReporter,
    /// Files downloaded at the same time.
    pub parallel: usize,
    /// Debian: also fetch and unpack linux-image (for vmlinuz). On by default.
    pub deb_image: bool,
    /// Debian: also fetch what kpatch-build needs (linux-source, and vmlinux
    /// streamed out of the -dbg package). Off by default.
    pub deb_kpatch: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            cache_dir: None,
            http: HttpOptions::default(),
            reporter: SharedReporter::default(),
            parallel: 4,
            deb_image: true,
            deb_kpatch: false,
        }
    }
}

impl FetchOptions {
    /// Defaults with the `KHOTFIX_HTTP_*` environment applied.
    pub fn from_env() -> Result<FetchOptions> {
        Ok(FetchOptions {
            http: HttpOptions::from_env()?,
            ..FetchOptions::default()
        })
    }

    /// Open the cache these options name.
    pub fn open_cache(&self) -> Result<Cache> {
        Cache::open(&Cache::default_root(self.cache_dir.as_deref())?)
    }

    /// The memo of slow apt answers, in the cache these options name.
    pub fn memo(&self) -> Result<crate::util::memo::Memo> {
        Ok(crate::util::memo::Memo::new(
            Cache::default_root(self.cache_dir.as_deref())?.join("memo"),
        ))
    }
}

/// One verified file in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchedFile {
    pub role: Role,
    /// `name-version-release.arch` (rpm) or `name=version` (deb).
    pub package: String,
    pub path: PathBuf,
    /// `algo:hex` as verified.
    pub checksum: String,
    pub size: u64,
    /// The URL it came from, `apt`, or `cache`.
    pub source: String,
    /// Already in the cache before this run.
    pub cached: bool,
}

/// Packages of an RPM-family kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpmKernel {
    pub kernel: KernelRelease,
    /// `kernel-<vr>.src.rpm` (for `kpatch-build -r`, or to prepare a tree).
    pub source_rpm: PathBuf,
    /// `kernel-debuginfo-<vr>.<arch>.rpm` (vmlinux).
    pub debuginfo_rpm: PathBuf,
    /// `kernel-debuginfo-common-<arch>-<vr>.<arch>.rpm`.
    pub debuginfo_common_rpm: PathBuf,
    /// `kernel-devel-<vr>.<arch>.rpm` (module build tree).
    pub devel_rpm: PathBuf,
    pub files: Vec<FetchedFile>,
}

/// Packages of a Debian kernel, unpacked together into `root`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DebKernel {
    pub kernel: KernelRelease,
    /// Unpacked linux-image (if fetched), linux-headers-<abi>-<flavour>,
    /// linux-headers-<abi>-common and linux-kbuild-<mm>, merged.
    pub root: PathBuf,
    /// `root/usr/src/linux-headers-<kernel>`: the kbuild tree for `make -C`.
    pub headers_dir: PathBuf,
    /// `root/boot/vmlinuz-<kernel>` when the image was fetched.
    pub vmlinuz: Option<PathBuf>,
    /// `root/lib/modules/<kernel>` when the image was fetched (what verify
    /// boots with, instead of the host's /lib/modules).
    pub modules_dir: Option<PathBuf>,
    /// kpatch builds: the verified `linux-source-<mm>` package and the
    /// vmlinux with debug info streamed out of `linux-image-<abi>-dbg`.
    pub kpatch: Option<DebKpatchInputs>,
    pub files: Vec<FetchedFile>,
}

/// What a Debian kpatch build needs beyond the headers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DebKpatchInputs {
    pub source_deb: PathBuf,
    /// `linux-source-<mm>=<version>`.
    pub source_package: String,
    pub vmlinux: PathBuf,
}

/// The result of fetching one kernel's packages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "lowercase")]
pub enum FetchedKernel {
    Rpm(RpmKernel),
    Deb(DebKernel),
}

impl FetchedKernel {
    pub fn files(&self) -> &[FetchedFile] {
        match self {
            FetchedKernel::Rpm(k) => &k.files,
            FetchedKernel::Deb(k) => &k.files,
        }
    }
}

/// Replace the mirror lists of a distro's repositories. Each entry is
/// `REPO=URL[,URL...]`; repeating a repo appends. Unknown repos are an error.
pub fn apply_mirror_overrides(distro: &mut Distro, entries: &[String]) -> Result<()> {
    let mut replaced: Vec<String> = Vec::new();
    for e in entries {
        let (name, urls) = e
            .split_once('=')
            .ok_or_else(|| anyhow!("mirror override {e:?}: expected REPO=URL[,URL...]"))?;
        let name = name.trim();
        let known: Vec<String> = distro.repos.iter().map(|r| r.name.clone()).collect();
        let dname = distro.name.clone();
        let repo = distro
            .repos
            .iter_mut()
            .find(|r| r.name == name)
            .ok_or_else(|| {
                anyhow!(
                    "mirror override {e:?}: distro {dname} has no repository {name:?} (known: {})",
                    known.join(", ")
                )
            })?;
        if !replaced.iter().any(|r| r == name) {
            repo.mirrors.clear();
            replaced.push(name.to_string());
        }
        for u in urls.split(',').filter(|u| !u.trim().is_empty()) {
            repo::mirror_base(u).with_context(|| format!("mirror override {e:?}"))?;
            repo.mirrors.push(u.trim().to_string());
        }
    }
    Ok(())
}

/// A built-in distro with the mirror overrides that name its repositories
/// (entries for other distros' repositories are left to those).
pub fn distro_with_mirrors(name: &str, overrides: &[String]) -> Result<Distro> {
    let mut d = Distro::builtin(name)?;
    let mine: Vec<String> = overrides
        .iter()
        .filter(|e| {
            e.split_once('=')
                .is_some_and(|(r, _)| d.repos.iter().any(|x| x.name == r.trim()))
        })
        .cloned()
        .collect();
    apply_mirror_overrides(&mut d, &mine)?;
    Ok(d)
}

/// The distro a job of `khotfix run` uses: built-in, with `$KHOTFIX_MIRRORS`
/// applied, so fetch downloads from the mirrors the plan was resolved with.
pub fn distro_for_run(name: &str) -> Result<Distro> {
    distro_with_mirrors(name, &env_mirror_overrides())
}

/// Kernels the recipes' distros publish (for `plan`/`run --from-repos`).
pub fn published_kernels_of(recipes: &[crate::recipe::Recipe]) -> Result<Vec<KernelRelease>> {
    let names: std::collections::BTreeSet<&str> = recipes
        .iter()
        .flat_map(|r| r.targets.iter().map(|t| t.distro.as_str()))
        .collect();
    let opts = FetchOptions::from_env()?;
    let mut out = Vec::new();
    for n in names {
        out.extend(published_kernels(&distro_for_run(n)?, &opts)?);
    }
    Ok(out)
}

/// Mirror overrides from `$KHOTFIX_MIRRORS`.
pub fn env_mirror_overrides() -> Vec<String> {
    std::env::var(ENV_MIRRORS)
        .unwrap_or_default()
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Every kernel the distro publishes: for yum distros, the kernels in its
/// indexed repositories; for Debian, the current ABI apt knows.
pub fn published_kernels(distro: &Distro, opts: &FetchOptions) -> Result<Vec<KernelRelease>> {
    match distro.family {
        Family::Deb => {
            let meta = distro
                .apt_metapackage
                .as_deref()
                .ok_or_else(|| anyhow!("distro {} has no apt_metapackage", distro.name))?;
            // Remembered while apt's lists and dpkg's status are unchanged:
            // apt-cache re-parses every list, and a no-op `run --from-repos`
            // would otherwise spend most of its time here.
            let memo = opts.memo()?;
            Ok(vec![apt::current_kernel_memo(Some(&memo), meta)?])
        }
        Family::Rpm => {
            let cache = opts.open_cache()?;
            let http = Http::new(opts.http.clone())?;
            let mut client = repo::RepoClient::new(&http, &cache, opts.reporter.as_ref());
            repo::published_kernels(&mut client, distro)
                .with_context(|| format!("listing kernels of {}", distro.name))
        }
    }
}

/// Fetch the packages for one plan job.
pub fn fetch_job(job: &Job, distro: &Distro, opts: &FetchOptions) -> Result<FetchedKernel> {
    if job.distro != distro.name {
        bail!(
            "job {} is for distro {}, not {}",
            job.id,
            job.distro,
            distro.name
        );
    }
    fetch_kernel(&job.kernel, distro, opts).with_context(|| format!("job {}", job.id))
}

/// Fetch (verified, cached) the packages a build for `kernel` needs.
pub fn fetch_kernel(
    kernel: &KernelRelease,
    distro: &Distro,
    opts: &FetchOptions,
) -> Result<FetchedKernel> {
    if !distro.owns(kernel) {
        bail!(
            "kernel {kernel} does not belong to distro {} (dists: {})",
            distro.name,
            distro.dists.join(", ")
        );
    }
    let cache = opts.open_cache()?;
    let progress = opts.reporter.as_ref();
    match distro.family {
        Family::Rpm => fetch_rpm(kernel, distro, opts, &cache, progress),
        Family::Deb => fetch_deb(kernel, opts, &cache, progress),
    }
}

fn fetch_rpm(
    kernel: &KernelRelease,
    distro: &Distro,
    opts: &FetchOptions,
    cache: &Cache,
    progress: &dyn Reporter,
) -> Result<FetchedKernel> {
    let http = Http::new(opts.http.clone())?;
    let resolved = {
        let mut client = repo::RepoClient::new(&http, cache, progress);
        repo::resolve(&mut client, distro, kernel)?
    };
    let total: u64 = resolved.iter().filter_map(|r| r.want.size).sum();
    overall(progress, resolved.len(), total);
    let files = download_all(&http, cache, &resolved, progress, opts.parallel)?;
    progress.finish(true, "");
    let path = |role: Role| -> Result<PathBuf> {
        files
            .iter()
            .find(|f| f.role == role)
            .map(|f| f.path.clone())
            .ok_or_else(|| anyhow!("internal: no {role:?} file"))
    };
    Ok(FetchedKernel::Rpm(RpmKernel {
        kernel: kernel.clone(),
        source_rpm: path(Role::Source)?,
        debuginfo_rpm: path(Role::Debuginfo)?,
        debuginfo_common_rpm: path(Role::DebuginfoCommon)?,
        devel_rpm: path(Role::Devel)?,
        files,
    }))
}

/// Tell the reporter the size of the whole download: `files` files, `bytes` in all.
fn overall(progress: &dyn Reporter, files: usize, bytes: u64) {
    progress.progress(0, Some(bytes));
    progress.status(&format!("{files} files"));
}

/// Download resolved packages, `parallel` at a time. All downloads run to the
/// end; the first error (in resolve order) is returned.
fn download_all(
    http: &Http,
    cache: &Cache,
    resolved: &[repo::Resolved],
    progress: &dyn Reporter,
    parallel: usize,
) -> Result<Vec<FetchedFile>> {
    let next = Mutex::new(0usize);
    let results: Vec<Mutex<Option<Result<FetchedFile>>>> =
        resolved.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..parallel.clamp(1, resolved.len().max(1)) {
            s.spawn(|| loop {
                let i = {
                    let Ok(mut n) = next.lock() else { return };
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some(r) = resolved.get(i) else { return };
                let out = download_one(http, cache, r, progress);
                if let Ok(mut slot) = results[i].lock() {
                    *slot = Some(out);
                }
            });
        }
    });
    let mut files = Vec::new();
    for (r, slot) in resolved.iter().zip(results) {
        let res = slot
            .into_inner()
            .ok()
            .flatten()
            .ok_or_else(|| anyhow!("download of {} did not run", r.nevra))?;
        files.push(res.with_context(|| format!("fetching {}", r.nevra))?);
    }
    Ok(files)
}

fn download_one(
    http: &Http,
    cache: &Cache,
    r: &repo::Resolved,
    progress: &dyn Reporter,
) -> Result<FetchedFile> {
    let source = r.role == Role::Source;
    let verify = |p: &Path| -> Result<()> {
        if r.direct {
            repo::verify_direct_rpm(p, &r.name, &r.version_release, source)
        } else {
            Ok(())
        }
    };
    let got = download::download(http, cache, &r.want, progress, &verify)?;
    Ok(FetchedFile {
        role: r.role,
        package: r.nevra.clone(),
        path: got.path,
        checksum: got.checksum.to_string(),
        size: got.size,
        cached: got.url.is_none(),
        source: got.url.unwrap_or_else(|| "cache".into()),
    })
}

fn fetch_deb(
    kernel: &KernelRelease,
    opts: &FetchOptions,
    cache: &Cache,
    progress: &dyn Reporter,
) -> Result<FetchedKernel> {
    let mut names = apt::kernel_packages(kernel, opts.deb_image)?;
    if opts.deb_kpatch {
        names.extend(apt::kpatch_packages(kernel)?);
    }
    let mut pkgs = Vec::new();
    let mut headers_version = None;
    let memo = opts.memo()?;
    let memo = Some(&memo);
    for (role, name) in &names {
        let p = match role {
            // linux-kbuild must come from the same source upload as the headers.
            Role::Kbuild => apt::show(memo, name, headers_version.as_deref())
                .or_else(|_| apt::show(memo, name, None))?,
            // The tree and vmlinux must be exactly the headers' upload.
            Role::Source | Role::Debuginfo => {
                let v = headers_version
                    .as_deref()
                    .context("internal: headers before kpatch packages")?;
                apt::show(memo, name, Some(v)).with_context(|| {
                    format!("{name} at the headers' version {v} (kpatch builds need it)")
                })?
            }
            _ => apt::show(memo, name, None)?,
        };
        if *role == Role::HeadersCommon {
            headers_version = Some(p.version.clone());
        }
        pkgs.push((*role, p));
    }
    let total = pkgs.iter().map(|(_, p)| p.size).sum();
    overall(progress, pkgs.len(), total);
    let mut files = Vec::new();
    for (role, p) in &pkgs {
        files.push(apt::fetch_deb(cache, p, *role, progress)?);
    }
    progress.finish(true, "");
    let merged = |f: &&FetchedFile| !matches!(f.role, Role::Source | Role::Debuginfo);
    let refs: Vec<&FetchedFile> = files.iter().filter(merged).collect();
    let root = apt::unpack_merged(cache, &refs)?;
    let headers_dir = root.join("usr/src").join(format!("linux-headers-{kernel}"));
    if !headers_dir.is_dir() {
        bail!("unpacked headers lack {}", headers_dir.display());
    }
    let vmlinuz = opts
        .deb_image
        .then(|| root.join("boot").join(format!("vmlinuz-{kernel}")));
    if let Some(v) = &vmlinuz {
        if !v.is_file() {
            bail!("unpacked linux-image lacks {}", v.display());
        }
    }
    let modules_dir = opts
        .deb_image
        .then(|| root.join("lib/modules").join(kernel.as_str()))
        .filter(|d| d.is_dir());
    if let Some(m) = &modules_dir {
        apt::depmod(&root, kernel, m)?;
    }
    let kpatch = match opts.deb_kpatch {
        false => None,
        true => Some(deb_kpatch_inputs(kernel, cache, &files)?),
    };
    Ok(FetchedKernel::Deb(DebKernel {
        kernel: kernel.clone(),
        root,
        headers_dir,
        vmlinuz,
        modules_dir,
        kpatch,
        files,
    }))
}

fn deb_kpatch_inputs(
    kernel: &KernelRelease,
    cache: &Cache,
    files: &[FetchedFile],
) -> Result<DebKpatchInputs> {
    let file = |role: Role| {
        files
            .iter()
            .find(|f| f.role == role)
            .ok_or_else(|| anyhow!("internal: no {role:?} package"))
    };
    let source = file(Role::Source)?;
    let vmlinux = apt::extract_member(
        cache,
        file(Role::Debuginfo)?,
        &apt::dbg_vmlinux_member(kernel),
    )?;
    Ok(DebKpatchInputs {
        source_deb: source.path.clone(),
        source_package: source.package.clone(),
        vmlinux,
    })
}

/// Download one URL into the cache, verified against `checksum` (the
/// `khotfix download` command; also what the benchmark measures).
pub fn download_url(
    urls: &[String],
    file_name: &str,
    checksum: &Checksum,
    size: Option<u64>,
    opts: &FetchOptions,
) -> Result<FetchedFile> {
    let cache = opts.open_cache()?;
    let http = Http::new(opts.http.clone())?;
    let progress = opts.reporter.as_ref();
    let want = download::Want {
        file_name: file_name.to_string(),
        urls: urls.to_vec(),
        checksum: Some(checksum.clone()),
        size,
    };
    let got = download::download(&http, &cache, &want, progress, &|_| Ok(()))?;
    Ok(FetchedFile {
        role: Role::File,
        package: file_name.to_string(),
        path: got.path,
        checksum: got.checksum.to_string(),
        size: got.size,
        cached: got.url.is_none(),
        source: got.url.unwrap_or_else(|| "cache".into()),
    })
}
