//! `khotfix completions SHELL`: a shell completion script generated from the
//! same clap definitions the binary parses with, so completions can never
//! drift from the real subcommands and options.

use anyhow::Result;
use clap::{Args, ValueEnum};

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for (on stdout).
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// The shells khotfix writes completions for.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl CompletionShell {
    fn generator(self) -> clap_complete::Shell {
        match self {
            CompletionShell::Bash => clap_complete::Shell::Bash,
            CompletionShell::Zsh => clap_complete::Shell::Zsh,
            CompletionShell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// Write the completion script for `a.shell` of the command tree `cmd`.
pub fn completions(a: CompletionsArgs, mut cmd: clap::Command) -> Result<i32> {
    let name = cmd.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(a.shell.generator(), &mut cmd, name, &mut script);
    use std::io::Write;
    std::io::stdout().write_all(&script)?;
    Ok(khotfix::util::exit::OK)
}
