//! The yum repository client: repomd.xml → primary → kernel packages.
//!
//! repomd.xml is fetched on every use (it is small and says whether anything
//! changed); the primary file is downloaded into the content-addressed cache
//! under the checksum repomd gives, and the kernel packages parsed from it are
//! kept in `metadata/<sha256 of repomd.xml>.json`, so an unchanged repository
//! costs one small GET.

use super::cache::Cache;
use super::digest::{digest, Algo};
use super::download::{download, Http, Want};
use super::primary::{self, Package};
use crate::distro::{Distro, RepoDef, RepoKind};
use crate::kernel::KernelRelease;
use crate::progress::Reporter;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// Package names the client keeps from primary metadata.
pub fn is_kernel_package(name: &str) -> bool {
    matches!(name, "kernel" | "kernel-devel" | "kernel-debuginfo")
        || name.starts_with("kernel-debuginfo-common-")
}

/// The kernel packages of one repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoIndex {
    pub repo: String,
    /// Mirror base URLs, the one that answered first.
    pub mirrors: Vec<String>,
    pub packages: Vec<Package>,
}

#[derive(Serialize, Deserialize)]
struct CachedIndex {
    format: u32,
    packages: Vec<Package>,
}

/// A mirror base URL with exactly one trailing slash; only http(s).
pub fn mirror_base(m: &str) -> Result<String> {
    let m = m.trim();
    if !(m.starts_with("http://") || m.starts_with("https://")) {
        bail!("mirror {m:?} is not an http:// or https:// URL");
    }
    if m.contains(char::is_whitespace) {
        bail!("mirror {m:?} contains whitespace");
    }
    Ok(format!("{}/", m.trim_end_matches('/')))
}

/// Loads and remembers repository indexes for one run.
pub struct RepoClient<'a> {
    pub http: &'a Http,
    pub cache: &'a Cache,
    pub progress: &'a dyn Reporter,
    loaded: HashMap<String, RepoIndex>,
}

impl<'a> RepoClient<'a> {
    pub fn new(http: &'a Http, cache: &'a Cache, progress: &'a dyn Reporter) -> Self {
        RepoClient {
            http,
            cache,
            progress,
            loaded: HashMap::new(),
        }
    }

    /// The kernel packages of `repo` (not for `direct` repositories).
    pub fn index(&mut self, repo: &RepoDef) -> Result<&RepoIndex> {
        if !self.loaded.contains_key(&repo.name) {
            let idx = self
                .load(repo)
                .with_context(|| format!("repository {}", repo.name))?;
            self.loaded.insert(repo.name.clone(), idx);
        }
        self.loaded
            .get(&repo.name)
            .ok_or_else(|| anyhow!("repository {} vanished", repo.name))
    }

    fn load(&self, repo: &RepoDef) -> Result<RepoIndex> {
        if repo.direct {
            bail!("has no repodata (direct = true): its packages cannot be listed");
        }
        let bases: Vec<String> = repo
            .mirrors
            .iter()
            .map(|m| mirror_base(m))
            .collect::<Result<_>>()?;
        if bases.is_empty() {
            bail!("no mirrors configured");
        }
        let urls: Vec<String> = bases
            .iter()
            .map(|b| format!("{b}repodata/repomd.xml"))
            .collect();
        let (url, body) = self.http.get_small(&urls, 16 << 20)?;
        // Put the mirror that answered first for everything that follows.
        let answered = bases
            .iter()
            .position(|b| url.starts_with(b.as_str()))
            .unwrap_or(0);
        let mut mirrors = bases.clone();
        let first = mirrors.remove(answered);
        mirrors.insert(0, first);

        let key = digest(Algo::Sha256, &body).hex;
        let meta = self.cache.metadata_path(&key);
        if let Some(packages) = read_cached(&meta) {
            return Ok(RepoIndex {
                repo: repo.name.clone(),
                mirrors,
                packages,
            });
        }
        let pref = super::repomd::parse(&url, &body)?;
        primary::check_location(&pref.href)
            .map_err(|e| anyhow!("repomd.xml at {url}: primary {e}"))?;
        let file_name = pref
            .href
            .rsplit('/')
            .next()
            .unwrap_or(&pref.href)
            .to_string();
        let want = Want {
            file_name,
            urls: mirrors
                .iter()
                .map(|b| format!("{b}{}", pref.href))
                .collect(),
            checksum: Some(pref.checksum.clone()),
            size: pref.size,
        };
        let got = download(
            self.http,
            self.cache,
            &want,
            &crate::progress::Quiet,
            &|_| Ok(()),
        )
        .with_context(|| format!("primary metadata named by {url}"))?;
        let primary_url = got.url.clone().unwrap_or_else(|| want.urls[0].clone());
        let f = std::fs::File::open(&got.path)
            .with_context(|| format!("opening {}", got.path.display()))?;
        let packages = primary::parse(&primary_url, f, |n, _| is_kernel_package(n))?;
        let json = serde_json::to_vec(&CachedIndex {
            format: 1,
            packages: packages.clone(),
        })?;
        crate::util::fsx::write_atomic(&meta, &json)?;
        Ok(RepoIndex {
            repo: repo.name.clone(),
            mirrors,
            packages,
        })
    }
}

fn read_cached(path: &Path) -> Option<Vec<Package>> {
    let bytes = std::fs::read(path).ok()?;
    let c: CachedIndex = serde_json::from_slice(&bytes).ok()?;
    (c.format == 1).then_some(c.packages)
}

/// `version-release.dist` of a kernel, as RPM metadata spells version and
/// release: `3.10.0-1062.9.1.el7` for `3.10.0-1062.9.1.el7.x86_64`.
pub fn rpm_version_release(k: &KernelRelease) -> String {
    match &k.dist {
        Some(d) => format!("{}-{}.{}", k.version, k.release, d),
        None => k.version_release(),
    }
}

/// Every kernel release the distro's indexed repositories hold (direct
/// repositories cannot be listed and are skipped).
pub fn published_kernels(client: &mut RepoClient, distro: &Distro) -> Result<Vec<KernelRelease>> {
    let mut out = BTreeSet::new();
    for repo in distro.repos.iter().filter(|r| !r.direct) {
        let idx = client.index(repo)?;
        for p in idx.packages.iter().filter(|p| {
            matches!(
                p.name.as_str(),
                "kernel" | "kernel-devel" | "kernel-debuginfo"
            )
        }) {
            let arch = if p.arch == "src" {
                distro.arch.as_str()
            } else {
                p.arch.as_str()
            };
            if arch != distro.arch {
                continue;
            }
            let Ok(k) = KernelRelease::parse(&format!("{}-{}.{}", p.version, p.release, arch))
            else {
                continue;
            };
            if distro.owns(&k) {
                out.insert(k);
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// Which package of a kernel a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The kernel source RPM.
    Source,
    /// kernel-debuginfo (vmlinux with debug info).
    Debuginfo,
    /// kernel-debuginfo-common-<arch> (debug sources).
    DebuginfoCommon,
    /// kernel-devel (module build tree).
    Devel,
    /// Debian: linux-image-<abi>-<flavour>.
    Image,
    /// Debian: linux-headers-<abi>-<flavour>.
    Headers,
    /// Debian: linux-headers-<abi>-common.
    HeadersCommon,
    /// Debian: linux-kbuild-<major.minor>.
    Kbuild,
    /// A file fetched by URL (`khotfix download`).
    File,
}

/// One package to download for a kernel.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub role: Role,
    /// `name-version-release.arch`.
    pub nevra: String,
    pub want: Want,
    /// Direct download: no metadata checksum; the RPM's own digests and
    /// header must match (see [`verify_direct_rpm`]).
    pub direct: bool,
    pub name: String,
    pub version_release: String,
}

/// Find the four packages of `kernel` in the distro's repositories.
pub fn resolve(
    client: &mut RepoClient,
    distro: &Distro,
    kernel: &KernelRelease,
) -> Result<Vec<Resolved>> {
    let arch = kernel.arch.clone().unwrap_or_else(|| distro.arch.clone());
    crate::util::validate::package_token("arch", &arch).map_err(|e| anyhow!(e))?;
    let vr = rpm_version_release(kernel);
    let wanted = [
        (
            Role::Source,
            RepoKind::Source,
            "kernel".to_string(),
            "src".to_string(),
        ),
        (
            Role::Debuginfo,
            RepoKind::Debuginfo,
            "kernel-debuginfo".to_string(),
            arch.clone(),
        ),
        (
            Role::DebuginfoCommon,
            RepoKind::Debuginfo,
            format!("kernel-debuginfo-common-{arch}"),
            arch.clone(),
        ),
        (
            Role::Devel,
            RepoKind::Devel,
            "kernel-devel".to_string(),
            arch.clone(),
        ),
    ];
    let mut out = Vec::new();
    for (role, kind, name, parch) in wanted {
        let nevra = format!("{name}-{vr}.{parch}");
        let repos: Vec<&RepoDef> = distro.repos.iter().filter(|r| r.kind == kind).collect();
        if repos.is_empty() {
            bail!(
                "distro {} defines no {kind:?} repository for {nevra}",
                distro.name
            );
        }
        let mut found = None;
        for repo in repos.iter().filter(|r| !r.direct) {
            let idx = client.index(repo)?;
            if let Some(p) = idx
                .packages
                .iter()
                .find(|p| p.name == name && p.arch == parch && p.version_release() == vr)
            {
                found = Some(Resolved {
                    role,
                    nevra: nevra.clone(),
                    want: Want {
                        file_name: p.file_name().to_string(),
                        urls: idx
                            .mirrors
                            .iter()
                            .map(|b| format!("{b}{}", p.location))
                            .collect(),
                        checksum: Some(p.checksum.clone()),
                        size: p.size,
                    },
                    direct: false,
                    name: name.clone(),
                    version_release: vr.clone(),
                });
                break;
            }
        }
        if found.is_none() {
            let direct: Vec<&&RepoDef> = repos.iter().filter(|r| r.direct).collect();
            if !direct.is_empty() {
                let file_name = format!("{nevra}.rpm");
                super::cache::check_file_name(&file_name)?;
                let mut urls = Vec::new();
                for r in &direct {
                    for m in &r.mirrors {
                        urls.push(format!("{}{file_name}", mirror_base(m)?));
                    }
                }
                found = Some(Resolved {
                    role,
                    nevra: nevra.clone(),
                    want: Want {
                        file_name,
                        urls,
                        checksum: None,
                        size: None,
                    },
                    direct: true,
                    name: name.clone(),
                    version_release: vr.clone(),
                });
            }
        }
        match found {
            Some(r) => out.push(r),
            None => bail!(
                "{nevra} is not in the {} repositories of {} ({})",
                format!("{kind:?}").to_lowercase(),
                distro.name,
                repos
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    Ok(out)
}

/// Check a directly downloaded RPM (no repository checksum): its header and
/// payload digests must verify and its header must name the package asked for.
pub fn verify_direct_rpm(
    path: &Path,
    name: &str,
    version_release: &str,
    source: bool,
) -> Result<()> {
    crate::publish::rpmcheck::check_file(path).map_err(|e| anyhow!("not a readable RPM: {e}"))?;
    let pkg = rpm::Package::open(path).map_err(|e| anyhow!("not a readable RPM: {e}"))?;
    pkg.verify_digests()
        .map_err(|e| anyhow!("RPM digest check failed: {e}"))?;
    let md = &pkg.metadata;
    let got_name = md.get_name().map_err(|e| anyhow!("RPM header: {e}"))?;
    let got_vr = format!(
        "{}-{}",
        md.get_version().map_err(|e| anyhow!("RPM header: {e}"))?,
        md.get_release().map_err(|e| anyhow!("RPM header: {e}"))?
    );
    if got_name != name || got_vr != version_release || md.is_source_package() != source {
        bail!(
            "RPM header says {got_name}-{got_vr} (source: {}), expected {name}-{version_release}",
            md.is_source_package()
        );
    }
    Ok(())
}
