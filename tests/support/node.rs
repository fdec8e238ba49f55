//! The node-side fixtures: the recipe the node tests share and the
//! generated node script they run (with dash, shellcheck or under qemu).

use super::process::ok;
use std::path::Path;

/// The node tests' recipe (hotfix 22519882 with a `[node]` table).
pub const RECIPE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/node/22519882.toml");

/// `khotfix node script RECIPE -o OUT`, which must succeed.
pub fn script(recipe: impl AsRef<Path>, out: &Path) {
    ok(super::bin::khotfix()
        .args(["node", "script"])
        .arg(recipe.as_ref())
        .arg("-o")
        .arg(out));
}
