//! `khotfix kernels`, `khotfix fetch`, `khotfix download`.
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use khotfix::distro::Distro;
use khotfix::fetch::{self, FetchOptions, FetchedKernel};
use khotfix::kernel::KernelRelease;
use khotfix::plan::Plan;
use khotfix::progress::{ProgressMode, SharedReporter};
use khotfix::recipe::Recipe;
use khotfix::util::exit;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// Options every fetching command shares.
#[derive(Args, Clone)]
pub struct NetArgs {
    /// Cache directory (default: $KHOTFIX_CACHE_DIR, else $XDG_CACHE_HOME/khotfix, else ~/.cache/khotfix).
    #[arg(long, env = "KHOTFIX_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Replace a repository's mirrors: REPO=URL[,URL...] (repeatable; also $KHOTFIX_MIRRORS).
    #[arg(long = "mirror", value_name = "REPO=URL")]
    pub mirrors: Vec<String>,
    /// Seconds without progress before a request fails (default 60; also $KHOTFIX_HTTP_TIMEOUT);
    /// also the window of the minimum-rate rule ($KHOTFIX_HTTP_MIN_RATE).
    #[arg(long)]
    pub timeout: Option<f64>,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

impl NetArgs {
    fn options(&self) -> Result<FetchOptions> {
        let mut o = FetchOptions::from_env()?;
        o.cache_dir = self.cache_dir.clone();
        if let Some(t) = self.timeout {
            if !(t > 0.0 && t.is_finite()) {
                bail!("--timeout {t}: expected a positive number of seconds");
            }
            o.http.timeout = Duration::from_secs_f64(t);
        }
        let mode = if self.quiet {
            ProgressMode::Quiet
        } else {
            ProgressMode::detect()
        };
        o.reporter = SharedReporter::new(super::progress::FetchDisplay::new(mode));
        Ok(o)
    }

    fn all_mirrors(&self) -> Vec<String> {
        let mut v = fetch::env_mirror_overrides();
        v.extend(self.mirrors.iter().cloned());
        v
    }
}

/// Every override must name a repository of one of `distros`.
fn check_overrides(overrides: &[String], distros: &[Distro]) -> Result<()> {
    for e in overrides {
        let (r, _) = e
            .split_once('=')
            .ok_or_else(|| anyhow!("mirror override {e:?}: expected REPO=URL[,URL...]"))?;
        if !distros
            .iter()
            .any(|d| d.repos.iter().any(|x| x.name == r.trim()))
        {
            let names: Vec<&str> = distros.iter().map(|d| d.name.as_str()).collect();
            bail!(
                "mirror override {e:?}: no repository {:?} in {}",
                r.trim(),
                names.join(", ")
            );
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct KernelsArgs {
    /// Distro name (centos7, alinux3, debian12).
    #[arg(long)]
    pub distro: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub net: NetArgs,
}

#[derive(Args)]
pub struct FetchArgs {
    pub recipe: PathBuf,
    /// Only this kernel release.
    #[arg(long)]
    pub kernel: Option<String>,
    /// Only targets of this distro.
    #[arg(long)]
    pub distro: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// Files downloaded at the same time.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Debian: skip linux-image (headers and kbuild only).
    #[arg(long)]
    pub no_image: bool,
    #[command(flatten)]
    pub net: NetArgs,
}

#[derive(Args)]
pub struct DownloadArgs {
    /// URL(s) of the same file, tried in order.
    #[arg(required = true)]
    pub urls: Vec<String>,
    /// Expected digest, `sha256:HEX` (also sha1/sha224/sha384/sha512).
    #[arg(long)]
    pub checksum: String,
    /// Expected size in bytes.
    #[arg(long)]
    pub size: Option<u64>,
    /// File name in the cache (default: the URL's last component).
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub net: NetArgs,
}

pub fn kernels(a: KernelsArgs) -> Result<i32> {
    let overrides = a.net.all_mirrors();
    let d = fetch::distro_with_mirrors(&a.distro, &overrides)?;
    check_overrides(&overrides, std::slice::from_ref(&d))?;
    let ks = fetch::published_kernels(&d, &a.net.options()?)?;
    if a.json {
        crate::cli::print_json(&serde_json::json!({ "distro": d.name, "kernels": ks }))?;
    } else {
        for k in &ks {
            println!("{k}");
        }
    }
    Ok(exit::OK)
}

pub fn fetch(a: FetchArgs) -> Result<i32> {
    let recipe = Recipe::load(&a.recipe).map_err(anyhow::Error::from)?;
    let mut opts = a.net.options()?;
    opts.parallel = a.parallel.max(1);
    opts.deb_image = !a.no_image;
    let overrides = a.net.all_mirrors();
    let names: BTreeSet<&str> = recipe
        .targets
        .iter()
        .map(|t| t.distro.as_str())
        .filter(|d| a.distro.as_deref().map_or(true, |x| x == *d))
        .collect();
    if names.is_empty() {
        bail!(
            "{}: no target for distro {}",
            a.recipe.display(),
            a.distro.as_deref().unwrap_or("?")
        );
    }
    let distros: Vec<Distro> = names
        .iter()
        .map(|n| fetch::distro_with_mirrors(n, &overrides))
        .collect::<Result<_>>()?;
    check_overrides(&overrides, &distros)?;
    let wanted = a.kernel.as_deref().map(KernelRelease::parse).transpose()?;
    // Ranges and bare versions resolve against what the repositories publish.
    let mut known = Vec::new();
    match &wanted {
        Some(k) => known.push(k.clone()),
        None => {
            for d in &distros {
                let needs_listing = recipe
                    .targets
                    .iter()
                    .filter(|t| t.distro == d.name)
                    .any(|t| !t.ranges.is_empty() || t.kernels.iter().any(|k| k.is_bare()));
                if needs_listing {
                    known.extend(fetch::published_kernels(d, &opts)?);
                }
            }
        }
    }
    let plan = Plan::expand(std::slice::from_ref(&recipe), &known)?;
    let jobs: Vec<_> = plan
        .jobs
        .iter()
        .filter(|j| names.contains(j.distro.as_str()))
        .filter(|j| wanted.as_ref().map_or(true, |k| &j.kernel == k))
        .collect();
    if jobs.is_empty() {
        match &wanted {
            Some(k) => bail!(
                "{}: kernel {k} is not in any selected target",
                a.recipe.display()
            ),
            None => bail!("{}: no kernels to fetch", a.recipe.display()),
        }
    }
    let mut code = exit::OK;
    let mut results = Vec::new();
    for job in jobs {
        let d = distros
            .iter()
            .find(|d| d.name == job.distro)
            .ok_or_else(|| anyhow!("no distro {}", job.distro))?;
        match fetch::fetch_job(job, d, &opts) {
            Ok(k) => {
                if !a.json {
                    print_fetched(&job.id, &k);
                }
                results.push(serde_json::json!({ "job": job.id, "ok": true, "fetched": k }));
            }
            Err(e) => {
                crate::cli::print_error(&e);
                code = exit::FAILED;
                results.push(serde_json::json!({ "job": job.id, "ok": false, "error": format!("{e:#}").replace('\n', " ") }));
            }
        }
    }
    if a.json {
        crate::cli::print_json(&results)?;
    }
    Ok(code)
}

fn print_fetched(job: &str, k: &FetchedKernel) {
    println!("{job}");
    for f in k.files() {
        let how = if f.cached { "cached" } else { "downloaded" };
        println!(
            "  {:<17} {}  ({how}, {})",
            format!("{:?}", f.role).to_lowercase(),
            f.path.display(),
            f.checksum
        );
    }
    if let FetchedKernel::Deb(d) = k {
        println!("  {:<17} {}", "headers-dir", d.headers_dir.display());
        if let Some(v) = &d.vmlinuz {
            println!("  {:<17} {}", "vmlinuz", v.display());
        }
    }
}

pub fn download(a: DownloadArgs) -> Result<i32> {
    let opts = a.net.options()?;
    let (kind, hex) = a
        .checksum
        .split_once(':')
        .ok_or_else(|| anyhow!("--checksum {:?}: expected ALGO:HEX", a.checksum))?;
    let sum = fetch::Checksum::parse(kind, hex).context("--checksum")?;
    let name = match &a.name {
        Some(n) => n.clone(),
        None => a.urls[0]
            .rsplit('/')
            .next()
            .unwrap_or("")
            .split(['?', '#'])
            .next()
            .unwrap_or("")
            .to_string(),
    };
    let f = fetch::download_url(&a.urls, &name, &sum, a.size, &opts)?;
    if a.json {
        crate::cli::print_json(&f)?;
    } else {
        println!("{}", f.path.display());
    }
    Ok(exit::OK)
}
