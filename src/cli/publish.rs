//! `khotfix publish`, `khotfix repo verify`.
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args)]
pub struct PublishArgs {
    #[arg(long)]
    pub repo: PathBuf,
    pub rpms: Vec<PathBuf>,
    #[arg(long)]
    pub keep: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum RepoCmd {
    /// Check every package and the metadata signature.
    Verify {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub fn publish(_a: PublishArgs) -> anyhow::Result<i32> {
    anyhow::bail!("publish: not implemented yet")
}

pub fn repo(_c: RepoCmd) -> anyhow::Result<i32> {
    anyhow::bail!("repo: not implemented yet")
}
