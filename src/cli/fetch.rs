//! `khotfix kernels`, `khotfix fetch`.
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct KernelsArgs {
    /// Distro name (centos7, alinux3, debian12).
    #[arg(long)]
    pub distro: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct FetchArgs {
    pub recipe: PathBuf,
    #[arg(long)]
    pub kernel: Option<String>,
    #[arg(long)]
    pub distro: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub fn kernels(_a: KernelsArgs) -> anyhow::Result<i32> {
    anyhow::bail!("kernels: not implemented yet")
}

pub fn fetch(_a: FetchArgs) -> anyhow::Result<i32> {
    anyhow::bail!("fetch: not implemented yet")
}

/// Kernels the recipes' distros publish (for `plan --from-repos`).
pub fn published_kernels(_recipes: &[khotfix::recipe::Recipe]) -> anyhow::Result<Vec<khotfix::kernel::KernelRelease>> {
    anyhow::bail!("plan --from-repos: not implemented yet")
}
