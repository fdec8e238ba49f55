//! The node commands as both front-ends run them: `khotfix node check|apply|
//! status` (clap, in the toolchain binary) and `khotfix-node check|apply|
//! status` (a hand-written parser, in the small node binary). Both parse
//! their arguments into the structs below and call these functions, so the
//! verdicts, the output and the exit codes cannot drift between them.
//!
//! Errors are printed as `khotfix: error: <one line>` by both binaries: fleet
//! log parsers and the generated script use that prefix.

use super::apply::ApplyOptions;
use super::{metrics, status, HostRoot};
use crate::util::exit;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How `check` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One line: `needs-hotfix: kernel ...`.
    Text,
    /// The full report as JSON.
    Json,
    /// node_exporter textfile metrics (see [`metrics`]).
    Prometheus,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            "prometheus" => Ok(Format::Prometheus),
            o => Err(format!(
                "unknown format {:?} (use text, json or prometheus)",
                super::root::clipped(o.as_bytes())
            )),
        }
    }
}

/// `check`'s arguments.
#[derive(Debug, Clone)]
pub struct CheckArgs {
    /// The recipe; default: the single one under `<root>/etc/khotfix/recipes`
    /// (with `--format prometheus`: every one there).
    pub recipe: Option<PathBuf>,
    pub root: PathBuf,
    pub format: Format,
    /// Write the output here atomically instead of to stdout (for the
    /// node_exporter textfile directory, which must never see half a file).
    pub output: Option<PathBuf>,
}

/// `apply`'s arguments.
#[derive(Debug, Clone)]
pub struct ApplyArgs {
    pub recipe: Option<PathBuf>,
    pub root: PathBuf,
    pub yes: bool,
    pub ko: Option<PathBuf>,
    pub timeout: Duration,
    pub json: bool,
}

/// `status`'s arguments.
#[derive(Debug, Clone)]
pub struct StatusArgs {
    pub root: PathBuf,
    pub json: bool,
}

/// `run`'s arguments: the periodic run of `khotfix-node.service`.
#[derive(Debug, Clone)]
pub struct RunArgs {
    pub root: PathBuf,
    /// Install the hotfixes that are needed (`apply --yes`); else check only.
    pub apply: bool,
    /// Write node_exporter textfile metrics here (atomically), after acting.
    pub metrics: Option<PathBuf>,
    pub timeout: Duration,
}

/// Print the one-line error both binaries print (exit code 2 is the caller's).
pub fn print_error(e: &anyhow::Error) {
    let msg = format!("{e:#}").replace('\n', " ");
    eprintln!("khotfix: error: {msg}");
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn load(given: Option<&Path>, root: &HostRoot) -> Result<crate::recipe::Recipe> {
    let path = super::check::find_recipe(given, root)?;
    super::check::load_recipe(&path)
}

fn emit(output: Option<&Path>, text: &str) -> Result<()> {
    match output {
        Some(p) => crate::util::fsx::write_atomic(p, text.as_bytes()),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// `check`: the verdict for one recipe (exit code as documented), or, with
/// `--format prometheus`, metrics for it or for every installed recipe.
pub fn check(a: &CheckArgs) -> Result<i32> {
    let root = HostRoot::new(&a.root);
    if a.format == Format::Prometheus {
        let (text, code) = metrics::for_node(a.recipe.as_deref(), &root)?;
        emit(a.output.as_deref(), &text)?;
        return Ok(code);
    }
    let report = match load(a.recipe.as_deref(), &root).and_then(|r| super::check(&r, &root)) {
        Ok(r) => r,
        Err(e) if a.format == Format::Json => {
            // Programs reading --json get an answer on stdout too.
            let reason = format!("{e:#}").replace('\n', " ");
            let v = serde_json::json!({ "verdict": "error", "reason": reason, "exit_code": 2 });
            emit(
                a.output.as_deref(),
                &format!("{}\n", serde_json::to_string_pretty(&v)?),
            )?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let text = match a.format {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&report)?),
        _ => format!("{}\n", report.line()),
    };
    emit(a.output.as_deref(), &text)?;
    Ok(report.exit_code)
}

/// `apply`: check, plan, and with `--yes` act.
pub fn apply(a: &ApplyArgs) -> Result<i32> {
    let root = HostRoot::new(&a.root);
    let recipe = load(a.recipe.as_deref(), &root)?;
    let opts = ApplyOptions {
        yes: a.yes,
        ko: a.ko.clone(),
        timeout: a.timeout,
    };
    let mut log = std::io::stdout();
    let sink: &mut dyn std::io::Write = if a.json {
        &mut std::io::sink()
    } else {
        &mut log
    };
    let report = super::apply::apply(&recipe, &root, &opts, sink)?;
    if a.json {
        print_json(&report)?;
    } else {
        if !report.acted {
            for s in &report.steps {
                println!("{}: {}", s.would(), s.display());
            }
        }
        if report.exit_code == exit::ERROR {
            eprintln!("khotfix: error: {}", report.message);
        } else {
            println!("{}", report.message);
        }
    }
    Ok(report.exit_code)
}

/// `status`: loaded livepatches and installed hotfix packages.
pub fn status(a: &StatusArgs) -> Result<i32> {
    let root = HostRoot::new(&a.root);
    let s = status::read(&root)?;
    if a.json {
        print_json(&s)?;
    } else {
        print!("{}", s.text());
    }
    Ok(exit::OK)
}

/// `run`: every recipe installed under the root is checked (one verdict
/// line each); with `--apply` each one that needs its hotfix is applied;
/// then the metrics are written. Exit 2 if a recipe could not be checked or
/// applied, else the code of the metrics (1 needed, 3 unfixable, 0).
pub fn run(a: &RunArgs) -> Result<i32> {
    let root = HostRoot::new(&a.root);
    let installed = super::check::installed_recipes(&root)?;
    if installed.is_empty() {
        anyhow::bail!(
            "no recipe installed in {}",
            root.path(super::check::RECIPES_DIR).display()
        );
    }
    let mut failed = false;
    for host_path in &installed {
        let one = || -> Result<()> {
            let path = super::check::installed_recipe_path(&root, host_path)?;
            let recipe = super::check::load_recipe(&path)?;
            let report = super::check(&recipe, &root)?;
            println!("{host_path}: {}", report.line());
            if a.apply && report.verdict == super::Verdict::NeedsHotfix {
                let opts = ApplyOptions {
                    yes: true,
                    ko: None,
                    timeout: a.timeout,
                };
                let r = super::apply::apply(&recipe, &root, &opts, &mut std::io::stdout())?;
                if r.exit_code == exit::ERROR {
                    anyhow::bail!("{}", r.message);
                }
                println!("{host_path}: {}", r.message);
            }
            Ok(())
        };
        if let Err(e) = one() {
            print_error(&e.context(host_path.clone()));
            failed = true;
        }
    }
    let (text, code) = metrics::for_node(None, &root)?;
    if let Some(p) = &a.metrics {
        crate::util::fsx::write_atomic(p, text.as_bytes())?;
    }
    Ok(if failed { exit::ERROR } else { code })
}
