//! `khotfix recipe lint`, `khotfix plan`.
use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use khotfix::plan::{read_kernel_list_for, Plan};
use khotfix::recipe::Recipe;
use khotfix::util::exit;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum RecipeCmd {
    /// Check recipes; every problem is printed as `file:line:col: what`
    /// (exit 2 if any recipe has a problem).
    Lint {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print `{"ok": bool, "diagnostics": [{file, line, col, message}]}` on
        /// stdout instead of lines on stderr.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum PlanFormat {
    Table,
    Json,
    Github,
    Gitlab,
    K8s,
}

#[derive(Args)]
pub struct PlanArgs {
    /// Recipes (default: recipes/*.toml).
    pub recipes: Vec<PathBuf>,
    /// Kernel releases to resolve ranges against, one per line.
    #[arg(long)]
    pub kernels: Option<PathBuf>,
    /// Resolve ranges against what the distros' repositories publish.
    #[arg(long)]
    pub from_repos: bool,
    /// Same as `--format json`.
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: PlanFormat,
}

pub fn recipe(cmd: RecipeCmd) -> Result<i32> {
    match cmd {
        RecipeCmd::Lint { files, json } => {
            let mut diagnostics = Vec::new();
            for f in &files {
                if let Err(errs) = Recipe::load(f) {
                    diagnostics.extend(errs.0);
                }
            }
            if json {
                crate::cli::print_json(&serde_json::json!({
                    "ok": diagnostics.is_empty(),
                    "diagnostics": diagnostics,
                }))?;
            } else {
                for d in &diagnostics {
                    eprintln!("{d}");
                }
            }
            Ok(if diagnostics.is_empty() {
                exit::OK
            } else {
                exit::ERROR
            })
        }
    }
}

/// Load recipes, or `recipes/*.toml` when none are given.
/// The recipes named, or `./recipes/*.toml` when none are.
pub fn load_recipes(paths: &[PathBuf]) -> Result<Vec<Recipe>> {
    Recipe::load_all(paths)
}

pub fn plan(a: PlanArgs) -> Result<i32> {
    let recipes = load_recipes(&a.recipes)?;
    // Only the kernels some target can match are kept: memory stays bounded
    // by the plan, however long the list.
    let mut known = match &a.kernels {
        Some(f) => read_kernel_list_for(f, &recipes)?,
        None => Vec::new(),
    };
    if a.from_repos {
        known.extend(khotfix::fetch::published_kernels_of(&recipes)?);
    }
    let plan = Plan::expand(&recipes, &known)?;
    // A target that matched nothing is usually a stale kernel list or a typo
    // in a range: say so on stderr (stdout stays machine-readable).
    for (recipe, target) in plan.unmatched_targets(&recipes) {
        eprintln!(
            "khotfix: warning: {}: target {target:?} matched no kernel{}",
            recipe.display(),
            if a.kernels.is_none() && !a.from_repos {
                " (no --kernels list given)"
            } else {
                ""
            }
        );
    }
    let format = if a.json { PlanFormat::Json } else { a.format };
    match format {
        PlanFormat::Table => print!("{}", plan.to_table()),
        PlanFormat::Json => crate::cli::print_json(&plan)?,
        PlanFormat::Github => println!("{}", serde_json::to_string(&plan.to_github())?),
        PlanFormat::Gitlab => {
            let include = std::env::var("KHOTFIX_GITLAB_INCLUDE")
                .ok()
                .filter(|v| !v.is_empty());
            print!("{}", plan.to_gitlab(include.as_deref())?)
        }
        PlanFormat::K8s => {
            let opts = khotfix::run::k8s::K8sOptions::from_env()?;
            print!("{}", khotfix::run::k8s::manifest_yaml(&plan, &opts)?);
        }
    }
    Ok(exit::OK)
}
