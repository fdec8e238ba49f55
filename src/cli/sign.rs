//! `khotfix sign`, `khotfix keys generate`, `khotfix package`.
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args)]
pub struct SignArgs {
    #[arg(long)]
    pub key: PathBuf,
    #[arg(long)]
    pub cert: PathBuf,
    pub module: PathBuf,
}

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Generate development signing keys into DIR.
    Generate { dir: PathBuf },
}

#[derive(Args)]
pub struct PackageArgs {
    pub recipe: PathBuf,
    #[arg(long)]
    pub kernel: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub fn sign(_a: SignArgs) -> anyhow::Result<i32> {
    anyhow::bail!("sign: not implemented yet")
}

pub fn keys(_c: KeysCmd) -> anyhow::Result<i32> {
    anyhow::bail!("keys: not implemented yet")
}

pub fn package(_a: PackageArgs) -> anyhow::Result<i32> {
    anyhow::bail!("package: not implemented yet")
}
