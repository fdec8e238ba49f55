//! `khotfix run`.
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct RunArgs {
    pub recipes: Vec<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(_a: RunArgs) -> anyhow::Result<i32> {
    anyhow::bail!("run: not implemented yet")
}

/// `plan --format k8s`: an Indexed Job plus a publish step.
pub fn print_k8s(_plan: &khotfix::plan::Plan) -> anyhow::Result<()> {
    anyhow::bail!("plan --format k8s: not implemented yet")
}
