//! `khotfix man DIR`: roff man pages generated from the clap definitions,
//! one per command and subcommand (`khotfix.1`, `khotfix-plan.1`,
//! `khotfix-node-check.1`, ...), so `man khotfix-run` documents exactly
//! the options the binary accepts.

use anyhow::{Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing).
    pub dir: PathBuf,
}

/// Write every page into `a.dir`; prints the paths written.
pub fn man(a: ManArgs, cmd: clap::Command) -> Result<i32> {
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("creating the man page directory {}", a.dir.display()))?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    write_pages(&cmd, &a.dir, &mut written)?;
    for p in written {
        println!("{}", p.display());
    }
    Ok(khotfix::util::exit::OK)
}

/// Render `cmd` and its visible subcommands, depth first. Each page is
/// rendered in memory and written atomically.
fn write_pages(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
    let page = clap_mangen::Man::new(cmd.clone());
    let mut roff = Vec::new();
    page.render(&mut roff)
        .with_context(|| format!("rendering the man page of {}", cmd.get_name()))?;
    let path = dir.join(page.get_filename());
    khotfix::util::fsx::write_atomic(&path, &roff)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}
