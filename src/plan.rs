//! Plans: recipes × kernels expanded into build jobs, each with a stable id.
//!
//! Ranges resolve against a list of kernel releases (a file, or what the
//! vendor's repositories publish; see `fetch`). Output formats: a human table,
//! JSON, a GitHub Actions `strategy.matrix.include` and a GitLab
//! `parallel:matrix` block.

use crate::distro::Distro;
use crate::kernel::KernelRelease;
use crate::recipe::{Backend, Recipe, Select};
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One unit of work: one hotfix for one kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    /// Stable id: `<hotfix id>-<target>-<kernel release>`.
    pub id: String,
    pub recipe: PathBuf,
    pub hotfix_id: u64,
    pub hotfix_name: String,
    pub target: String,
    pub distro: String,
    pub backend: Backend,
    pub kernel: KernelRelease,
    /// `kernel-hotfix-<id>-<version-release>`.
    pub package: String,
}

/// The expanded matrix.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub jobs: Vec<Job>,
}

/// Read a kernel list: one release per line; blank lines and `#` comments
/// are skipped. Errors name the file and line.
pub fn read_kernel_list(path: &Path) -> Result<Vec<KernelRelease>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading kernel list {}", path.display()))?;
    parse_kernel_list(&path.display().to_string(), &text)
}

/// Parse kernel-list text (see [`read_kernel_list`]).
pub fn parse_kernel_list(name: &str, text: &str) -> Result<Vec<KernelRelease>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let k = KernelRelease::parse(line).map_err(|e| anyhow::anyhow!("{name}:{}: {e}", i + 1))?;
        out.push(k);
    }
    Ok(out)
}

impl Plan {
    /// Expand recipes against the known kernels. Explicit full releases in a
    /// target are always included; ranges and bare versions match kernels
    /// from `known` whose flavour belongs to the target's distro.
    pub fn expand(recipes: &[Recipe], known: &[KernelRelease]) -> Result<Plan> {
        let mut jobs = Vec::new();
        for r in recipes {
            for t in &r.targets {
                let distro = Distro::builtin(&t.distro)?;
                let mut chosen: BTreeSet<KernelRelease> = BTreeSet::new();
                for k in t.kernels.iter().filter(|k| !k.is_bare()) {
                    if !t
                        .exclude
                        .iter()
                        .any(|e| e == k || (e.is_bare() && e.cmp_version_release(k).is_eq()))
                    {
                        chosen.insert(k.clone());
                    }
                }
                for k in known.iter().filter(|k| distro.owns(k) && t.matches(k)) {
                    chosen.insert(k.clone());
                }
                let chosen: Vec<KernelRelease> = match t.select {
                    Select::All => chosen.into_iter().collect(),
                    Select::Newest => chosen.into_iter().next_back().into_iter().collect(),
                };
                for k in chosen {
                    jobs.push(Job {
                        id: format!("{}-{}-{}", r.hotfix.id, t.name, k),
                        recipe: r.path.clone(),
                        hotfix_id: r.hotfix.id,
                        hotfix_name: r.hotfix.name.clone(),
                        target: t.name.clone(),
                        distro: t.distro.clone(),
                        backend: t.backend,
                        package: r.hotfix.package_name(&k),
                        kernel: k,
                    });
                }
            }
        }
        // Stable, readable order: by hotfix, target, then kernel in rpm order
        // (so 5.10.134-15 comes before 5.10.134-15.1), whatever the input order.
        jobs.sort_by(|a, b| {
            (a.hotfix_id, &a.target, &a.kernel)
                .cmp(&(b.hotfix_id, &b.target, &b.kernel))
                .then_with(|| a.id.cmp(&b.id))
        });
        jobs.dedup_by(|a, b| a.id == b.id);
        Ok(Plan { jobs })
    }

    /// A plain table for people.
    pub fn to_table(&self) -> String {
        let headers = ["JOB", "DISTRO", "BACKEND", "KERNEL", "PACKAGE"];
        let rows: Vec<[String; 5]> = self
            .jobs
            .iter()
            .map(|j| {
                [
                    j.id.clone(),
                    j.distro.clone(),
                    j.backend.to_string(),
                    j.kernel.to_string(),
                    j.package.clone(),
                ]
            })
            .collect();
        crate::util::table::render(&headers, &rows)
    }

    /// GitHub Actions: the JSON for `strategy.matrix` (`{"include": [...]}`).
    pub fn to_github(&self) -> serde_json::Value {
        let include: Vec<_> = self
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| {
                serde_json::json!({
                    "index": i, "job": j.id, "recipe": j.recipe, "target": j.target,
                    "distro": j.distro, "kernel": j.kernel, "backend": j.backend,
                })
            })
            .collect();
        serde_json::json!({ "include": include })
    }

    /// GitLab CI: a `parallel:matrix` block (YAML).
    pub fn to_gitlab(&self) -> String {
        let mut out = String::from("parallel:\n  matrix:\n");
        for j in &self.jobs {
            // Job ids and kernels are validated tokens: no quoting issues in YAML.
            out.push_str(&format!(
                "    - KHOTFIX_JOB: \"{}\"\n      KHOTFIX_RECIPE: \"{}\"\n      KHOTFIX_KERNEL: \"{}\"\n",
                j.id,
                yaml_escape(&j.recipe.display().to_string()),
                j.kernel
            ));
        }
        out
    }
}

fn yaml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_sort_in_rpm_order() {
        let r = Recipe::load(Path::new("recipes/bpf-lru-leak-22519882.toml")).unwrap();
        let known = parse_kernel_list(
            "k",
            "5.10.134-19.al8.x86_64\n5.10.134-15.1.al8.x86_64\n5.10.134-15.al8.x86_64\n",
        )
        .unwrap();
        let plan = Plan::expand(&[r], &known).unwrap();
        let names: Vec<_> = plan.jobs.iter().map(|j| j.kernel.as_str()).collect();
        assert_eq!(
            names,
            [
                "5.10.134-15.al8.x86_64",
                "5.10.134-15.1.al8.x86_64",
                "5.10.134-19.al8.x86_64"
            ]
        );
    }

    #[test]
    fn kernel_list_errors_name_line() {
        let e = parse_kernel_list("k.txt", "# c\n5.10.134-18.al8.x86_64\nbad\n").unwrap_err();
        assert!(e.to_string().starts_with("k.txt:3:"), "{e}");
    }
}
