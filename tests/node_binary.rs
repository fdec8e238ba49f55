//! `khotfix-node` links only the node code of the library: no TLS, HTTP,
//! RPM writer, RSA, PGP, XML, compression or clap (issue 15). Checked on the
//! test build's symbols (`nm -C`; the test build is not stripped): a crate
//! whose code reached the binary shows up as `<crate>::` paths.

use std::process::Command;

/// Crates the node agent must not carry, as their symbol path prefixes.
const FORBIDDEN: &[&str] = &[
    "reqwest",
    "rustls",
    "hyper",
    "h2",
    "ring",
    "rpm",
    "pgp",
    "rsa",
    "quick_xml",
    "zstd",
    "liblzma",
    "flate2",
    "x509_cert",
    "cms",
    "clap",
    "indicatif",
    "duct",
    "regex",
];

#[test]
fn khotfix_node_links_no_toolchain_dependency() {
    let out = Command::new("nm")
        .arg("-C")
        .arg(env!("CARGO_BIN_EXE_khotfix-node"))
        .output()
        .expect("nm (binutils)");
    assert!(out.status.success());
    let syms = String::from_utf8_lossy(&out.stdout);
    assert!(
        syms.contains("khotfix::node::cmd::check"),
        "nm shows no khotfix symbols"
    );
    for c in FORBIDDEN {
        let hits: Vec<&str> = syms
            .lines()
            .filter(|l| l.contains(&format!(" {c}::")) || l.contains(&format!("<{c}::")))
            .take(3)
            .collect();
        assert!(hits.is_empty(), "khotfix-node links {c}: {hits:?}");
    }
    // The toolchain binary does link them: the check can see a crate.
    let out = Command::new("nm")
        .arg("-C")
        .arg(env!("CARGO_BIN_EXE_khotfix"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(" reqwest::"));
}
