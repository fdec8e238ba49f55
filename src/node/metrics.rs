//! `check --format prometheus`: node_exporter textfile metrics, so a fleet
//! dashboard shows which nodes still need which hotfix.
//!
//! One series per recipe and metric, labelled with the hotfix id and the
//! running kernel:
//!
//! ```text
//! khotfix_hotfix_needed{id="22519882",kernel="5.10.134-18.al8.x86_64"} 1
//! khotfix_hotfix_loaded{id="22519882",kernel="5.10.134-18.al8.x86_64"} 0
//! khotfix_node_unfixable{id="22519882",kernel="5.10.134-18.al8.x86_64"} 0
//! ```
//!
//! A recipe that cannot be evaluated (unreadable, or the host's files break
//! the limits of [`super::root`]) gives `khotfix_check_error{recipe="..."} 1`
//! instead of stopping the others. Label values are escaped as the text
//! format requires (`\\`, `\"`, `\n`); the values come from validated recipes
//! and the validated kernel release, and a file name is shown clipped.

use super::check::{self, Verdict};
use super::HostRoot;
use crate::util::exit;
use anyhow::Result;
use std::fmt::Write;
use std::path::Path;

/// (name, help) of each per-hotfix gauge, in output order.
const GAUGES: [(&str, &str); 4] = [
    (
        "khotfix_hotfix_needed",
        "1 if this node is affected by the hotfix and it is not live (install it)",
    ),
    (
        "khotfix_hotfix_loaded",
        "1 if the hotfix's livepatch is enabled on this node (live, or its transition is running)",
    ),
    (
        "khotfix_node_unfixable",
        "1 if this node is affected but its kernel flavour cannot be hot-fixed",
    ),
    (
        "khotfix_hotfix_affected",
        "1 if this node's kernel is in the hotfix's affected set",
    ),
];

/// A label value in the text exposition format.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// One evaluated recipe.
struct Row {
    id: u64,
    kernel: String,
    verdict: Verdict,
}

impl Row {
    fn value(&self, metric: &str) -> u8 {
        let v = match metric {
            "khotfix_hotfix_needed" => self.verdict == Verdict::NeedsHotfix,
            "khotfix_hotfix_loaded" => matches!(self.verdict, Verdict::Fixed | Verdict::Applying),
            "khotfix_node_unfixable" => self.verdict == Verdict::Unfixable,
            _ => self.verdict != Verdict::NotAffected,
        };
        u8::from(v)
    }
}

/// The metrics text for `recipe`, or for every recipe installed under the
/// root when none is given, and the exit code: 2 if a recipe could not be
/// evaluated, else 1 if a hotfix is needed, else 3 if the node is
/// unfixable, else 0 (the codes of `check`).
pub fn for_node(recipe: Option<&Path>, root: &HostRoot) -> Result<(String, i32)> {
    // (shown name, the recipe file given) or (installed host path, None).
    let items: Vec<(String, Option<&Path>)> = match recipe {
        Some(p) => vec![(p.display().to_string(), Some(p))],
        None => {
            let installed = check::installed_recipes(root)?;
            if installed.is_empty() {
                anyhow::bail!(
                    "no --recipe given and no recipe installed in {}",
                    root.path(check::RECIPES_DIR).display()
                );
            }
            installed.into_iter().map(|h| (h, None)).collect()
        }
    };
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (shown, given) in items {
        // An installed recipe is read confined and bounded like every host file.
        let result = match given {
            Some(p) => Ok(p.to_path_buf()),
            None => check::installed_recipe_path(root, &shown),
        }
        .and_then(|path| check::load_recipe(&path))
        .and_then(|r| check::check(&r, root));
        match result {
            Ok(r) => rows.push(Row {
                id: r.hotfix_id,
                kernel: r.kernel.unwrap_or_default(),
                verdict: r.verdict,
            }),
            Err(e) => {
                super::cmd::print_error(&e);
                errors.push(shown);
            }
        }
    }
    let code = if !errors.is_empty() {
        exit::ERROR
    } else if rows.iter().any(|r| r.verdict == Verdict::NeedsHotfix) {
        exit::FAILED
    } else if rows.iter().any(|r| r.verdict == Verdict::Unfixable) {
        exit::UNFIXABLE
    } else {
        exit::OK
    };
    Ok((render(&rows, &errors), code))
}

fn render(rows: &[Row], errors: &[String]) -> String {
    let mut s = String::new();
    for (name, help) in GAUGES {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge");
        for r in rows {
            let _ = writeln!(
                s,
                "{name}{{id=\"{}\",kernel=\"{}\"}} {}",
                r.id,
                escape_label(&r.kernel),
                r.value(name)
            );
        }
    }
    let name = "khotfix_check_error";
    let _ = writeln!(
        s,
        "# HELP {name} 1 for a recipe this node could not evaluate (see the agent's log)\n# TYPE {name} gauge"
    );
    for e in errors {
        let shown = super::root::clipped(e.as_bytes());
        let _ = writeln!(s, "{name}{{recipe=\"{}\"}} 1", escape_label(&shown));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn rendering_has_one_series_per_recipe_and_gauge() {
        let rows = [Row {
            id: 7,
            kernel: "5.10.134-18.al8.x86_64".into(),
            verdict: Verdict::NeedsHotfix,
        }];
        let t = render(&rows, &["/etc/khotfix/recipes/\"x\".toml".into()]);
        assert!(t.contains("khotfix_hotfix_needed{id=\"7\",kernel=\"5.10.134-18.al8.x86_64\"} 1\n"));
        assert!(t.contains("khotfix_hotfix_loaded{id=\"7\",kernel=\"5.10.134-18.al8.x86_64\"} 0\n"));
        assert!(
            t.contains(
                "khotfix_check_error{recipe=\"/etc/khotfix/recipes/\\\\\\\"x\\\\\\\".toml\"} 1\n"
            ),
            "{t}"
        );
    }
}
