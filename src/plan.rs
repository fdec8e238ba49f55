//! Plans: recipes × kernels expanded into build jobs, each with a stable id.
//!
//! Ranges resolve against a list of kernel releases (a file, or what the
//! vendor's repositories publish; see `fetch`). Output formats: a human table,
//! JSON, a GitHub Actions `strategy.matrix.include` and a GitLab child
//! pipeline with a `parallel:matrix` (and, in `run::k8s`, Kubernetes Jobs).

use crate::distro::Distro;
use crate::kernel::KernelRelease;
use crate::recipe::{Backend, Recipe, Select};
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeSet;
use std::io::BufRead;
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

/// The longest line a kernel list may have (a release is at most 128
/// characters; the rest is room for indentation and comments).
pub const MAX_KERNEL_LINE: usize = 4096;

/// Read a kernel list: one release per line; blank lines and `#` comments
/// are skipped. Errors name the file and line.
pub fn read_kernel_list(path: &Path) -> Result<Vec<KernelRelease>> {
    let mut out = Vec::new();
    read_kernel_list_with(path, |k| out.push(k))?;
    Ok(out)
}

/// Read a kernel list keeping only the kernels some target of `recipes`
/// can match (a distinct set, in list order). The list is streamed, so
/// memory is bounded by the kernels kept, not by the list's size: a list of
/// every kernel a vendor ever shipped costs no more than the plan.
pub fn read_kernel_list_for(path: &Path, recipes: &[Recipe]) -> Result<Vec<KernelRelease>> {
    let targets = TargetIndex::new(recipes)?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    read_kernel_list_with(path, |k| {
        if targets.wants(&k) && seen.insert(k.as_str().to_string()) {
            out.push(k);
        }
    })?;
    Ok(out)
}

fn read_kernel_list_with(path: &Path, each: impl FnMut(KernelRelease)) -> Result<()> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("reading kernel list {}", path.display()))?;
    let name = path.display().to_string();
    for_each_kernel(&name, std::io::BufReader::new(file), each)
}

/// Parse kernel-list text (see [`read_kernel_list`]).
pub fn parse_kernel_list(name: &str, text: &str) -> Result<Vec<KernelRelease>> {
    let mut out = Vec::new();
    for_each_kernel(name, text.as_bytes(), |k| out.push(k))?;
    Ok(out)
}

/// Call `each` for every release in a kernel list read line by line; a line
/// over [`MAX_KERNEL_LINE`] bytes or not UTF-8 is an error naming `name:line`.
fn for_each_kernel(
    name: &str,
    mut reader: impl BufRead,
    mut each: impl FnMut(KernelRelease),
) -> Result<()> {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut n = 0usize;
    loop {
        buf.clear();
        n += 1;
        let got = (&mut reader)
            .take(MAX_KERNEL_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading kernel list {name}"))?;
        if got == 0 {
            return Ok(());
        }
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if body.len() > MAX_KERNEL_LINE {
            anyhow::bail!("{name}:{n}: line longer than {MAX_KERNEL_LINE} bytes");
        }
        let line = std::str::from_utf8(body)
            .map_err(|_| anyhow::anyhow!("{name}:{n}: line is not UTF-8"))?
            .trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let k = KernelRelease::parse(line).map_err(|e| anyhow::anyhow!("{name}:{n}: {e}"))?;
        each(k);
    }
}

/// Every target of a set of recipes with its distro, loaded once.
struct TargetIndex<'a> {
    targets: Vec<(&'a crate::recipe::Target, Distro)>,
}

impl<'a> TargetIndex<'a> {
    fn new(recipes: &'a [Recipe]) -> Result<TargetIndex<'a>> {
        let mut distros: std::collections::HashMap<&str, Distro> = Default::default();
        let mut targets = Vec::new();
        for t in recipes.iter().flat_map(|r| &r.targets) {
            let d = match distros.get(t.distro.as_str()) {
                Some(d) => d.clone(),
                None => {
                    let d = Distro::builtin(&t.distro)?;
                    distros.insert(&t.distro, d.clone());
                    d
                }
            };
            targets.push((t, d));
        }
        Ok(TargetIndex { targets })
    }

    /// Could a target match `k` through a range or a bare version?
    fn wants(&self, k: &KernelRelease) -> bool {
        self.targets.iter().any(|(t, d)| d.owns(k) && t.matches(k))
    }
}

impl Plan {
    /// Expand recipes against the known kernels. Explicit full releases in a
    /// target are always included; ranges and bare versions match kernels
    /// from `known` whose flavour belongs to the target's distro.
    pub fn expand(recipes: &[Recipe], known: &[KernelRelease]) -> Result<Plan> {
        let mut jobs = Vec::new();
        let index = TargetIndex::new(recipes)?;
        let mut distros = index.targets.iter().map(|(_, d)| d);
        for r in recipes {
            for t in &r.targets {
                let distro = distros.next().expect("one distro per target");
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

    /// Targets that matched no kernel, as (recipe, target name), in recipe
    /// order. One pass over the jobs and one over the targets.
    pub fn unmatched_targets<'a>(&self, recipes: &'a [Recipe]) -> Vec<(&'a Path, &'a str)> {
        let matched: std::collections::HashSet<(u64, &str)> = self
            .jobs
            .iter()
            .map(|j| (j.hotfix_id, j.target.as_str()))
            .collect();
        recipes
            .iter()
            .flat_map(|r| r.targets.iter().map(move |t| (r, t)))
            .filter(|(r, t)| !matched.contains(&(r.hotfix.id, t.name.as_str())))
            .map(|(r, t)| (r.path.as_path(), t.name.as_str()))
            .collect()
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
    /// Every entry carries the plan digest (`plan`) for `--expect-plan`.
    pub fn to_github(&self) -> serde_json::Value {
        let digest = crate::run::plan_digest(self);
        let include: Vec<_> = self
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| {
                serde_json::json!({
                    "index": i, "job": j.id, "plan": digest, "recipe": j.recipe, "target": j.target,
                    "distro": j.distro, "kernel": j.kernel, "backend": j.backend,
                })
            })
            .collect();
        serde_json::json!({ "include": include })
    }

    /// GitLab CI: a child-pipeline configuration (YAML) holding the hidden
    /// job [`GITLAB_MATRIX_JOB`] with one `parallel:matrix` entry per plan
    /// job (`KHOTFIX_JOB_INDEX`, `KHOTFIX_JOB`) and the plan digest in
    /// `variables` (`KHOTFIX_PLAN`), for a build job to `extends:`. With
    /// `include`, the configuration also includes that project file (the
    /// static build and publish jobs), so the output is the whole child
    /// pipeline of GitLab's dynamic-child-pipeline pattern (see
    /// examples/gitlab-ci.yml). Written by the one YAML writer.
    pub fn to_gitlab(&self, include: Option<&str>) -> Result<String> {
        if self.jobs.is_empty() {
            anyhow::bail!("the plan has no jobs: GitLab cannot run an empty parallel:matrix");
        }
        if self.jobs.len() > GITLAB_MAX_MATRIX {
            anyhow::bail!(
                "the plan has {} jobs; GitLab runs at most {GITLAB_MAX_MATRIX} per parallel:matrix: plan fewer recipes or targets at a time",
                self.jobs.len()
            );
        }
        let matrix: Vec<_> = self
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| serde_json::json!({"KHOTFIX_JOB_INDEX": i.to_string(), "KHOTFIX_JOB": j.id}))
            .collect();
        let mut doc = serde_json::Map::new();
        if let Some(path) = include {
            check_gitlab_include(path)?;
            doc.insert("include".into(), serde_json::json!([{ "local": path }]));
        }
        doc.insert(
            GITLAB_MATRIX_JOB.into(),
            serde_json::json!({
                "variables": {"KHOTFIX_PLAN": crate::run::plan_digest(self)},
                "parallel": {"matrix": matrix},
            }),
        );
        let header = format!(
            "# khotfix plan: {} job(s), plan {}\n",
            self.jobs.len(),
            crate::run::plan_digest(self)
        );
        Ok(header + &crate::util::yaml::stream(&[serde_json::Value::Object(doc)])?)
    }
}

/// The hidden job `plan --format gitlab` defines for a build job to extend.
pub const GITLAB_MATRIX_JOB: &str = ".khotfix-plan";

/// GitLab's limit on the jobs of one `parallel:matrix`.
pub const GITLAB_MAX_MATRIX: usize = 200;

/// `KHOTFIX_GITLAB_INCLUDE` is a file in the project, and GitLab expands
/// variables in include paths: only a plain relative path is accepted.
fn check_gitlab_include(path: &str) -> Result<()> {
    let plain = !path.is_empty()
        && path.len() <= 1024
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        && !path.split('/').any(|c| c == "..");
    if !plain {
        anyhow::bail!(
            "KHOTFIX_GITLAB_INCLUDE={path:?}: expected a path inside the project (letters, digits, '.', '_', '-', '/'; no '..')"
        );
    }
    Ok(())
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
    fn kernel_list_line_length_is_capped() {
        let long = format!(
            "5.10.134-18.al8.x86_64\n{}\n",
            "#".repeat(MAX_KERNEL_LINE + 1)
        );
        let e = parse_kernel_list("k.txt", &long).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("k.txt:2: line longer than {MAX_KERNEL_LINE} bytes")
        );
        let ok = format!("{}\n5.10.134-18.al8.x86_64", "#".repeat(MAX_KERNEL_LINE));
        assert_eq!(parse_kernel_list("k.txt", &ok).unwrap().len(), 1);
    }

    #[test]
    fn kernel_list_errors_name_line() {
        let e = parse_kernel_list("k.txt", "# c\n5.10.134-18.al8.x86_64\nbad\n").unwrap_err();
        assert!(e.to_string().starts_with("k.txt:3:"), "{e}");
    }
}
