//! Reading the YAML khotfix writes with a parser khotfix did not write:
//! PyYAML (`yaml.safe_load_all`), the same family of parser kubectl and CI
//! systems use, so a document that only our own reader accepts fails here.

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

/// Every document of the YAML stream `yaml` (null for an empty one), as
/// JSON; the parser's error text if PyYAML refuses it.
pub fn pyyaml(yaml: &str) -> Result<Vec<Value>, String> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin.buffer))))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed (with python3-yaml; see .ci/packages.txt)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}
