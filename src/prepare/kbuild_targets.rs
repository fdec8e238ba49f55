//! Which kbuild targets a patch needs: module-only builds.
//!
//! kpatch-build's default targets are `vmlinux modules`: a whole distro
//! kernel, hours on a small builder, although most livepatches change code
//! in one module. When every changed file is a C source compiled into a
//! module (under the kernel's own Makefiles and this kernel's `.config`),
//! kpatch-build can be given just those modules (`-t net/foo/bar.ko`) and
//! builds only them and what they need. Anything we cannot place with
//! certainty — a header, an assembly file, built-in code, a file no Makefile
//! names — makes the build a full one; the reason is kept so the user sees
//! why before the long build starts.
//!
//! The Makefile reading is deliberately small: logical lines (backslash
//! continuations joined), `NAME-objs`/`NAME-y`/`NAME-$(CONFIG_X)` composite
//! lists and `obj-$(CONFIG_X)`/`obj-m`/`obj-y` lines. That covers how
//! modules are declared in-tree; unusual constructs fall to a full build.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What kpatch-build should build.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum BuildTargets {
    /// Only these modules (`dir/name.ko`), sorted.
    Modules { modules: Vec<String> },
    /// `vmlinux modules`, because of `reason`.
    Full { reason: String },
}

impl BuildTargets {
    /// kpatch-build `-t` values (none for a full build: its default).
    pub fn kpatch_targets(&self) -> Vec<String> {
        match self {
            BuildTargets::Modules { modules } => modules.clone(),
            BuildTargets::Full { .. } => Vec::new(),
        }
    }
}

/// What a full build costs, said before it starts. The figure is an
/// estimate, not a measurement on this machine: a distro's amd64 config with
/// debug info (~4,000 modules) is several hours of CPU time, and
/// kpatch-build builds the tree twice (original and patched).
pub fn full_build_estimate(reason: &str) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu_hours = 6.0; // two builds of ~3 CPU-hours each
    let wall = cpu_hours / cores as f64;
    format!(
        "full kernel build (vmlinux modules) because {reason}: expect roughly {wall:.1} h on {cores} core(s) (about {cpu_hours:.0} CPU-hours, an estimate)"
    )
}

/// `CONFIG_*` values of a kernel `.config` (`y`, `m`, strings as written).
#[derive(Debug, Clone, Default)]
pub struct KernelConfig(BTreeMap<String, String>);

impl KernelConfig {
    pub fn parse(text: &str) -> KernelConfig {
        let map = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| k.starts_with("CONFIG_"))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        KernelConfig(map)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// How an object is built, from an `obj-…` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Linkage {
    Module,
    BuiltIn,
    Off,
}

/// The targets for a patch touching `changed` (tree-relative paths).
pub fn targets_for(tree: &Path, config: &KernelConfig, changed: &[String]) -> BuildTargets {
    let mut modules = BTreeSet::new();
    for file in changed {
        match module_of(tree, config, file) {
            Ok(m) => {
                modules.insert(m);
            }
            Err(reason) => return BuildTargets::Full { reason },
        }
    }
    if modules.is_empty() {
        return BuildTargets::Full {
            reason: "the patch changes no file".into(),
        };
    }
    BuildTargets::Modules {
        modules: modules.into_iter().collect(),
    }
}

/// `dir/name.ko` for a C file compiled into a module, or why not.
fn module_of(tree: &Path, config: &KernelConfig, file: &str) -> Result<String, String> {
    let (dir, base) = file.rsplit_once('/').unwrap_or(("", file));
    let stem = base.strip_suffix(".c").ok_or_else(|| {
        format!("{file} is not a C source file (headers and assembly can affect any object)")
    })?;
    let lines =
        makefile_lines(tree, dir).ok_or_else(|| format!("{dir}/ has no Makefile or Kbuild"))?;
    let object = format!("{stem}.o");
    // The composite object that lists this one, else the object itself.
    let owner = lines
        .iter()
        .find_map(|l| composite_owner(l, &object, config))
        .unwrap_or_else(|| stem.to_string());
    let owner_obj = format!("{owner}.o");
    let linkage = lines
        .iter()
        .find_map(|l| obj_linkage(l, &owner_obj, config))
        .ok_or_else(|| format!("{file}: no obj- line in {dir}/Makefile builds {owner_obj}"))?;
    match linkage {
        Linkage::Module => Ok(if dir.is_empty() {
            format!("{owner}.ko")
        } else {
            format!("{dir}/{owner}.ko")
        }),
        Linkage::BuiltIn => Err(format!("{file} is built into vmlinux ({owner_obj})")),
        Linkage::Off => Err(format!(
            "{file} ({owner_obj}) is not built by this kernel's config"
        )),
    }
}

/// The directory's Makefile (or Kbuild) as logical lines, comments dropped.
fn makefile_lines(tree: &Path, dir: &str) -> Option<Vec<String>> {
    let d = tree.join(dir);
    let text = ["Kbuild", "Makefile"]
        .iter()
        .find_map(|n| std::fs::read_to_string(d.join(n)).ok())?;
    let mut out = Vec::new();
    let mut cur = String::new();
    for raw in text.lines() {
        let l = raw.split('#').next().unwrap_or("");
        if let Some(head) = l.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
            continue;
        }
        cur.push_str(l);
        if !cur.trim().is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        cur.clear();
    }
    Some(out)
}

/// `(lhs, words of rhs)` of an assignment line.
fn assignment(line: &str) -> Option<(&str, Vec<&str>)> {
    let (lhs, rhs) = line
        .split_once(":=")
        .or_else(|| line.split_once("+="))
        .or_else(|| line.split_once('='))?;
    Some((lhs.trim(), rhs.split_whitespace().collect()))
}

/// `$(CONFIG_X)` → how `X` is set.
fn config_linkage(cond: &str, config: &KernelConfig) -> Linkage {
    let name = cond
        .strip_prefix("$(")
        .and_then(|c| c.strip_suffix(')'))
        .unwrap_or(cond);
    match config.get(name) {
        Some("m") => Linkage::Module,
        Some("y") => Linkage::BuiltIn,
        _ => Linkage::Off,
    }
}

/// `NAME-objs := … object …` (or `NAME-y`, `NAME-$(CONFIG_X)` when X is set).
fn composite_owner(line: &str, object: &str, config: &KernelConfig) -> Option<String> {
    let (lhs, words) = assignment(line)?;
    if !words.contains(&object) {
        return None;
    }
    let (name, suffix) = lhs.rsplit_once('-')?;
    if name == "obj" || name.is_empty() || name.contains(['$', '(', ' ']) {
        return None;
    }
    let on = match suffix {
        "objs" | "y" => true,
        s if s.starts_with("$(CONFIG_") => config_linkage(s, config) != Linkage::Off,
        _ => false,
    };
    on.then(|| name.to_string())
}

/// `obj-$(CONFIG_X) += … object …`, `obj-m`, `obj-y`.
fn obj_linkage(line: &str, object: &str, config: &KernelConfig) -> Option<Linkage> {
    let (lhs, words) = assignment(line)?;
    if !words.contains(&object) {
        return None;
    }
    match lhs.strip_prefix("obj-")? {
        "m" => Some(Linkage::Module),
        "y" => Some(Linkage::BuiltIn),
        cond if cond.starts_with("$(CONFIG_") => Some(config_linkage(cond, config)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (p, c) in files {
            let p = d.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        }
        d
    }

    const IPVS: &str = "# SPDX\nip_vs_proto-objs-y :=\nip_vs-objs :=\tip_vs_conn.o ip_vs_core.o \\\n\t\tip_vs_est.o ip_vs_proto.o\n\nobj-$(CONFIG_IP_VS) += ip_vs.o\nobj-$(CONFIG_IP_VS_RR) += ip_vs_rr.o\nobj-y += ip_vs_builtin.o\n";

    fn changed(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_file_of_a_composite_module_builds_that_module_only() {
        let t = tree(&[("net/netfilter/ipvs/Makefile", IPVS)]);
        let c = KernelConfig::parse("CONFIG_IP_VS=m\nCONFIG_IP_VS_RR=m\n");
        let got = targets_for(t.path(), &c, &changed(&["net/netfilter/ipvs/ip_vs_est.c"]));
        assert_eq!(
            got.kpatch_targets(),
            ["net/netfilter/ipvs/ip_vs.ko".to_string()]
        );
        let got = targets_for(
            t.path(),
            &c,
            &changed(&[
                "net/netfilter/ipvs/ip_vs_rr.c",
                "net/netfilter/ipvs/ip_vs_core.c",
            ]),
        );
        assert_eq!(
            got.kpatch_targets(),
            [
                "net/netfilter/ipvs/ip_vs.ko",
                "net/netfilter/ipvs/ip_vs_rr.ko"
            ]
        );
    }

    #[test]
    fn anything_uncertain_is_a_full_build_with_its_reason() {
        let t = tree(&[("net/netfilter/ipvs/Makefile", IPVS)]);
        let c = KernelConfig::parse("CONFIG_IP_VS=y\nCONFIG_IP_VS_RR=m\n");
        let full = |files: &[&str], want: &str| match targets_for(t.path(), &c, &changed(files)) {
            BuildTargets::Full { reason } => assert!(reason.contains(want), "{reason}"),
            m => panic!("{files:?}: expected a full build, got {m:?}"),
        };
        full(&["net/netfilter/ipvs/ip_vs_est.c"], "built into vmlinux");
        full(
            &["net/netfilter/ipvs/ip_vs_builtin.c"],
            "built into vmlinux",
        );
        full(&["include/net/ip_vs.h"], "not a C source");
        full(
            &["net/netfilter/ipvs/ip_vs_rr.c", "arch/x86/entry/entry_64.S"],
            "not a C source",
        );
        full(&["net/netfilter/ipvs/unknown.c"], "no obj- line");
        full(&["net/other/x.c"], "no Makefile");
        let off = KernelConfig::parse("");
        match targets_for(t.path(), &off, &changed(&["net/netfilter/ipvs/ip_vs_rr.c"])) {
            BuildTargets::Full { reason } => assert!(reason.contains("not built"), "{reason}"),
            m => panic!("{m:?}"),
        }
    }
}
