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

/// `khotfix node image` refuses a dynamically linked binary (a FROM scratch
/// image has no libc) before building anything, and for a static one
/// prints the Containerfile: the binary alone. busybox-static stands in
/// for the static khotfix-node (no image is built here: --dry-run).
#[test]
fn node_image_needs_a_static_binary() {
    let out = Command::new(env!("CARGO_BIN_EXE_khotfix"))
        .args([
            "node",
            "image",
            "--dry-run",
            "--binary",
            env!("CARGO_BIN_EXE_khotfix-node"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is dynamically linked"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_khotfix"))
        .args([
            "node",
            "image",
            "--dry-run",
            "--binary",
            "/bin/busybox",
            "--tag",
            "reg.example/khotfix-node:1",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("FROM scratch\nCOPY khotfix-node /khotfix-node\n"),
        "{text}"
    );
    assert!(
        text.contains("build --tag reg.example/khotfix-node:1 --file "),
        "{text}"
    );
}
