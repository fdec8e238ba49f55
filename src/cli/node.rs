//! `khotfix node check|apply|script|daemonset`.
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum NodeCmd {
    /// Does this node need the hotfix?
    Check {
        #[arg(long)]
        recipe: Option<PathBuf>,
        #[arg(long, default_value = "/")]
        root: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub fn node(_c: NodeCmd) -> anyhow::Result<i32> {
    anyhow::bail!("node: not implemented yet")
}
