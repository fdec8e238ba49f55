//! The `khotfix` command line: a thin layer over the library. Each subcommand
//! parses its arguments here and calls one stage of `khotfix::*`.

mod cli;

use clap::{CommandFactory, Parser, Subcommand};
use khotfix::util::exit;

#[derive(Parser)]
#[command(
    name = "khotfix",
    version,
    about = "Kernel source fix → signed livepatch hotfix RPMs → signed yum repository → node agent"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Recipe tools (lint).
    #[command(subcommand)]
    Recipe(cli::recipe::RecipeCmd),
    /// Expand recipes × kernels into build jobs.
    Plan(cli::recipe::PlanArgs),
    /// List the kernels a distro's repositories publish.
    Kernels(cli::fetch::KernelsArgs),
    /// Download (verified, cached) the kernel packages a recipe's jobs need.
    Fetch(cli::fetch::FetchArgs),
    /// Download one file by URL into the cache, verified against its checksum.
    Download(cli::fetch::DownloadArgs),
    /// Check a recipe's patches for what kpatch cannot handle.
    Preflight(cli::prepare::PreflightArgs),
    /// Build livepatch modules for a recipe's jobs in builder containers.
    Build(cli::build::BuildArgs),
    /// Builder container images.
    #[command(subcommand)]
    Builder(cli::build::BuilderCmd),
    /// Append a kernel module signature (byte-identical to scripts/sign-file).
    Sign(cli::sign::SignArgs),
    /// Signing keys.
    #[command(subcommand)]
    Keys(cli::sign::KeysCmd),
    /// Package built modules as signed kernel-hotfix RPMs.
    Package(cli::sign::PackageArgs),
    /// Add RPMs to a yum repository and regenerate signed metadata.
    Publish(cli::publish::PublishArgs),
    /// Repository tools (verify).
    #[command(subcommand)]
    Repo(cli::publish::RepoCmd),
    /// The node agent: check, apply, and generated scripts/manifests.
    #[command(subcommand)]
    Node(cli::node::NodeCmd),
    /// The whole pipeline: plan → fetch → prepare → build → sign → package → verify → publish.
    Run(cli::run::RunArgs),
    /// Print a shell completion script (bash, zsh or fish).
    Completions(cli::completions::CompletionsArgs),
    /// Write man pages, one per command and subcommand, into a directory.
    Man(cli::man::ManArgs),
}

fn main() {
    // `node check` runs on every node (cloud-init, DaemonSets, cron): a fast
    // path skips building the whole clap command tree (see benches/node.sh).
    if let Some(code) = cli::node::fast_check(std::env::args_os().skip(1)) {
        std::process::exit(code);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Recipe(c) => cli::recipe::recipe(c),
        Command::Plan(a) => cli::recipe::plan(a),
        Command::Kernels(a) => cli::fetch::kernels(a),
        Command::Fetch(a) => cli::fetch::fetch(a),
        Command::Download(a) => cli::fetch::download(a),
        Command::Preflight(a) => cli::prepare::preflight(a),
        Command::Build(a) => cli::build::build(a),
        Command::Builder(c) => cli::build::builder(c),
        Command::Sign(a) => cli::sign::sign(a),
        Command::Keys(c) => cli::sign::keys(c),
        Command::Package(a) => cli::sign::package(a),
        Command::Publish(a) => cli::publish::publish(a),
        Command::Repo(c) => cli::publish::repo(c),
        Command::Node(c) => cli::node::node(c),
        Command::Run(a) => cli::run::run(a),
        Command::Completions(a) => cli::completions::completions(a, Cli::command()),
        Command::Man(a) => cli::man::man(a, Cli::command()),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            cli::print_error(&e);
            exit::ERROR
        }
    };
    std::process::exit(code);
}
