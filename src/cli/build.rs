//! `khotfix build`, `khotfix builder build`.
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args)]
pub struct BuildArgs {
    pub recipe: PathBuf,
    #[arg(long)]
    pub kernel: Option<String>,
    /// Jobs to build at once.
    #[arg(short = 'j', long, default_value_t = 1)]
    pub jobs: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum BuilderCmd {
    /// Build a builder image from containers/NAME.
    Build { name: String },
}

pub fn build(_a: BuildArgs) -> anyhow::Result<i32> {
    anyhow::bail!("build: not implemented yet")
}

pub fn builder(_c: BuilderCmd) -> anyhow::Result<i32> {
    anyhow::bail!("builder: not implemented yet")
}
