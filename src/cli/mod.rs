//! Subcommand argument structs and their thin handlers. Each returns the
//! process exit code (see `khotfix::util::exit`).

pub mod build;
pub mod completions;
pub mod fetch;
pub mod man;
pub mod node;
pub mod prepare;
pub mod progress;
pub mod publish;
pub mod recipe;
pub mod run;
pub mod sign;

/// Print an error chain on one line: `khotfix: error: outer: inner: cause`.
pub fn print_error(e: &anyhow::Error) {
    let msg = format!("{e:#}").replace('\n', " ");
    eprintln!("khotfix: error: {msg}");
}

/// Print a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
