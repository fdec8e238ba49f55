//! `khotfix preflight`.
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct PreflightArgs {
    pub recipe: PathBuf,
    /// Treat warnings as errors.
    #[arg(long)]
    pub strict: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn preflight(_a: PreflightArgs) -> anyhow::Result<i32> {
    anyhow::bail!("preflight: not implemented yet")
}
