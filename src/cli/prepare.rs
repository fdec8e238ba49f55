//! `khotfix preflight`.
use clap::Args;
use khotfix::prepare::preflight;
use khotfix::recipe::{Backend, Recipe};
use khotfix::util::exit;
use std::path::PathBuf;

#[derive(Args)]
pub struct PreflightArgs {
    pub recipe: PathBuf,
    /// Treat warnings as errors.
    #[arg(long)]
    pub strict: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Exit codes: 0 no findings at error level, 1 findings at error level
/// (after `--strict`), 2 bad input (unreadable recipe or patch).
pub fn preflight(a: PreflightArgs) -> anyhow::Result<i32> {
    let recipe = match Recipe::load(&a.recipe) {
        Ok(r) => r,
        Err(e) => {
            for d in &e.0 {
                eprintln!("khotfix: error: {d}");
            }
            return Ok(exit::ERROR);
        }
    };
    let patches: Vec<PathBuf> = recipe
        .targets
        .iter()
        .filter(|t| t.backend == Backend::Kpatch)
        .flat_map(|t| t.patches.iter().cloned())
        .collect();
    let report = match preflight::analyze_patches(&patches, a.strict) {
        Ok(r) => r,
        Err(e) => {
            crate::cli::print_error(&e);
            return Ok(exit::ERROR);
        }
    };
    if a.json {
        crate::cli::print_json(&report)?;
    } else {
        for f in &report.findings {
            println!("{f}");
        }
        if report.patches.is_empty() {
            eprintln!(
                "preflight: {}: no kpatch patches to check",
                a.recipe.display()
            );
        } else {
            eprintln!(
                "preflight: {} patch(es): {} error(s), {} warning(s){}",
                report.patches.len(),
                report.errors,
                report.warnings,
                if a.strict { " (--strict)" } else { "" }
            );
        }
    }
    Ok(report.exit_code())
}
