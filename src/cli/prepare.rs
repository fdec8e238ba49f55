//! `khotfix preflight`.
use clap::Args;
use khotfix::prepare::preflight;
use khotfix::recipe::{Backend, Recipe};
use khotfix::util::exit;
use std::path::PathBuf;

#[derive(Args)]
pub struct PreflightArgs {
    /// The recipe whose kpatch targets' patches are read.
    #[arg(required_unless_present = "patch")]
    pub recipe: Option<PathBuf>,
    /// A patch to check instead of (or besides) a recipe's; repeat for a
    /// series, in order. Relative paths are from the current directory.
    #[arg(long, value_name = "FILE")]
    pub patch: Vec<PathBuf>,
    /// Also check that the series applies to this local kernel tree (a dry
    /// run; nothing is fetched and the tree is not modified).
    #[arg(long, value_name = "DIR")]
    pub tree: Option<PathBuf>,
    /// With --tree: the recipe target whose series is checked (needed when
    /// kpatch targets list different patches).
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Treat warnings as errors.
    #[arg(long)]
    pub strict: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Exit codes: 0 no findings at error level, 1 findings at error level
/// (after `--strict`) or a patch that does not apply to `--tree`, 2 bad
/// input (unreadable recipe or patch, missing tree, ambiguous series).
pub fn preflight(a: PreflightArgs) -> anyhow::Result<i32> {
    let series = match series(&a) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let what = a
        .recipe
        .as_ref()
        .map_or_else(|| "patches".to_string(), |r| r.display().to_string());
    let mut report = match preflight::analyze_patches(&series, a.strict) {
        Ok(r) => r,
        Err(e) => {
            crate::cli::print_error(&e);
            return Ok(exit::ERROR);
        }
    };
    if let Some(tree) = &a.tree {
        if !tree.is_dir() {
            eprintln!("khotfix: error: --tree {}: not a directory", tree.display());
            return Ok(exit::ERROR);
        }
        if let Err(e) = report.check_tree(tree, &series) {
            crate::cli::print_error(&e);
            return Ok(exit::ERROR);
        }
    }
    if a.json {
        crate::cli::print_json(&report)?;
    } else {
        for f in &report.findings {
            println!("{f}");
        }
        if let Some(e) = &report.tree_error {
            println!("{e}");
        }
        if report.patches.is_empty() {
            eprintln!("preflight: {what}: no kpatch patches to check");
        } else {
            let tree = match (&report.tree, &report.tree_error) {
                (Some(t), None) => format!(", applies to {}", t.display()),
                (Some(t), Some(_)) => format!(", does not apply to {}", t.display()),
                _ => String::new(),
            };
            eprintln!(
                "preflight: {} patch(es): {} error(s), {} warning(s){}{tree}",
                report.patches.len(),
                report.errors,
                report.warnings,
                if a.strict { " (--strict)" } else { "" }
            );
        }
    }
    Ok(report.exit_code())
}

/// The patch series to read: the recipe's kpatch targets' patches (the one
/// `--target` names, if given), then `--patch` files. With `--tree` the
/// series must be one kernel's: kpatch targets listing different patches
/// need `--target`. `Err` is the exit code after the error was printed.
fn series(a: &PreflightArgs) -> Result<Vec<PathBuf>, i32> {
    let mut out: Vec<PathBuf> = Vec::new();
    if let Some(path) = &a.recipe {
        let recipe = match Recipe::load(path) {
            Ok(r) => r,
            Err(e) => {
                for d in &e.0 {
                    eprintln!("khotfix: error: {d}");
                }
                return Err(exit::ERROR);
            }
        };
        let targets: Vec<_> = recipe
            .targets
            .iter()
            .filter(|t| t.backend == Backend::Kpatch)
            .filter(|t| a.target.as_ref().map_or(true, |n| &t.name == n))
            .collect();
        if let Some(name) = &a.target {
            if targets.is_empty() {
                eprintln!(
                    "khotfix: error: {}: no kpatch target named {name:?}",
                    path.display()
                );
                return Err(exit::ERROR);
            }
        }
        let distinct: std::collections::BTreeSet<&Vec<PathBuf>> =
            targets.iter().map(|t| &t.patches).collect();
        if a.tree.is_some() && distinct.len() > 1 {
            eprintln!(
                "khotfix: error: {}: {} kpatch targets list different patches; name the one \
                 matching --tree with --target",
                path.display(),
                distinct.len()
            );
            return Err(exit::ERROR);
        }
        for t in targets {
            for p in &t.patches {
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
        }
    } else if a.target.is_some() {
        eprintln!("khotfix: error: --target needs a recipe");
        return Err(exit::ERROR);
    }
    out.extend(a.patch.iter().cloned());
    Ok(out)
}
