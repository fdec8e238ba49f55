//! `khotfix keys generate` and OpenPGP key loading, checked with openssl,
//! the kernel's sign-file, gpg and rpm.

mod support;

use khotfix::keys::{PackageSigner, Passphrase};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use support::bin::khotfix;
use support::kernel::{modules, sign_file};
use support::process::{output, run};
use support::tmp::tmpdir;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn generated_keys_are_usable_and_shaped_like_the_kernels() {
    let d = tmpdir().join("keys");
    let out = run(khotfix()
        .args([
            "keys",
            "generate",
            "--bits",
            "2048",
            "--json",
            "--common-name",
            "Test Org: kpatch signing",
        ])
        .arg(&d));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let p = |k: &str| std::path::PathBuf::from(v[k].as_str().unwrap());
    assert_eq!(mode(&p("module_key")), 0o600);
    assert_eq!(mode(&p("pgp_secret")), 0o600);
    assert_eq!(mode(&p("module_cert")), 0o644);
    assert_eq!(mode(&p("pgp_public")), 0o644);
    assert_eq!(mode(&d), 0o700);
    assert!(
        !out.contains("PRIVATE KEY") && !out.contains("PGP PRIVATE"),
        "no key material on stdout"
    );
    let enroll: Vec<&str> = v["enroll"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        enroll[0].starts_with("mokutil --import ") && enroll[0].contains("module-signing.crt.der"),
        "{enroll:?}"
    );
    assert!(
        enroll[1].starts_with("rpm --import ") && enroll[1].contains("RPM-GPG-KEY-khotfix"),
        "{enroll:?}"
    );

    // The certificate: self-signed, CA:FALSE, digitalSignature, codeSigning, SKI = AKI.
    let text = run(Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(p("module_cert")));
    let after = |h: &str| {
        let mut it = text.lines().skip_while(|l| !l.contains(h));
        it.nth(1)
            .unwrap_or_else(|| panic!("no {h} in\n{text}"))
            .trim()
            .to_string()
    };
    assert!(
        text.contains("X509v3 Basic Constraints: critical"),
        "{text}"
    );
    assert_eq!(after("X509v3 Basic Constraints"), "CA:FALSE");
    assert_eq!(after("X509v3 Key Usage"), "Digital Signature");
    assert_eq!(after("X509v3 Extended Key Usage"), "Code Signing");
    let ski = after("X509v3 Subject Key Identifier");
    assert_eq!(
        after("X509v3 Authority Key Identifier").trim_start_matches("keyid:"),
        ski
    );
    assert!(
        text.contains("Subject: CN = Test Org: kpatch signing"),
        "{text}"
    );
    assert!(
        text.contains("Issuer: CN = Test Org: kpatch signing"),
        "{text}"
    );
    assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
    assert!(
        text.contains("Signature Algorithm: sha256WithRSAEncryption"),
        "{text}"
    );
    // DER and PEM are the same certificate.
    let der_pem = run(Command::new("openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(p("module_cert_der")));
    assert_eq!(der_pem, std::fs::read_to_string(p("module_cert")).unwrap());

    // sign-file accepts the pair and agrees with khotfix byte for byte.
    let m = &modules()[1];
    let t = tmpdir();
    sign_file(
        "sha256",
        &p("module_key"),
        &p("module_cert"),
        m,
        &t.join("a.ko"),
    );
    run(khotfix()
        .args(["sign", "--key"])
        .arg(p("module_key"))
        .arg("--cert")
        .arg(p("module_cert_der"))
        .arg("-o")
        .arg(t.join("b.ko"))
        .arg(m));
    assert_eq!(
        std::fs::read(t.join("a.ko")).unwrap(),
        std::fs::read(t.join("b.ko")).unwrap()
    );

    // gpg reads the public key; its fingerprint is the one reported.
    let gnupg = tmpdir();
    std::fs::set_permissions(&gnupg, std::fs::Permissions::from_mode(0o700)).unwrap();
    let shown = run(Command::new("gpg")
        .env("GNUPGHOME", &gnupg)
        .args(["--batch", "--with-colons", "--show-keys"])
        .arg(p("pgp_public")));
    let fpr = shown
        .lines()
        .find_map(|l| l.strip_prefix("fpr:"))
        .map(|l| l.trim_matches(':').to_string())
        .unwrap();
    assert_eq!(fpr, v["pgp_fingerprint"].as_str().unwrap());
    assert!(
        shown.lines().any(|l| l.starts_with("pub:")
            && l.split(':').nth(2) == Some("2048")
            && l.split(':').nth(3) == Some("1")),
        "RSA 2048:\n{shown}"
    );

    // A detached armored signature (what repomd.xml.asc is) verifies with gpg.
    let signer = PackageSigner::load(&p("pgp_secret"), None).unwrap();
    let data = b"<repomd/>\n";
    let asc = signer.sign_detached_armored(data, 1_754_322_514).unwrap();
    assert_eq!(
        asc,
        signer.sign_detached_armored(data, 1_754_322_514).unwrap(),
        "deterministic for a fixed time"
    );
    std::fs::write(t.join("repomd.xml"), data).unwrap();
    std::fs::write(t.join("repomd.xml.asc"), &asc).unwrap();
    run(Command::new("gpg")
        .env("GNUPGHOME", &gnupg)
        .args(["--batch", "--import"])
        .arg(p("pgp_public")));
    let o = output(
        Command::new("gpg")
            .env("GNUPGHOME", &gnupg)
            .args(["--batch", "--verify"])
            .arg(t.join("repomd.xml.asc"))
            .arg(t.join("repomd.xml")),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Good signature"));
    std::fs::write(t.join("repomd.xml"), b"<repomd>tampered</repomd>\n").unwrap();
    let o = output(
        Command::new("gpg")
            .env("GNUPGHOME", &gnupg)
            .args(["--batch", "--verify"])
            .arg(t.join("repomd.xml.asc"))
            .arg(t.join("repomd.xml")),
    );
    assert!(!o.status.success());

    // Never overwrites existing keys.
    let o = output(
        khotfix()
            .args(["keys", "generate", "--bits", "2048"])
            .arg(&d),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refusing to overwrite"));
}

#[test]
fn passphrase_protected_gpg_key_signs_packages() {
    let gnupg = tmpdir();
    std::fs::set_permissions(&gnupg, std::fs::Permissions::from_mode(0o700)).unwrap();
    let gpg = || {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", &gnupg)
            .args(["--batch", "--pinentry-mode", "loopback"]);
        c
    };
    let pwfile = gnupg.join("pw");
    std::fs::write(&pwfile, "correct horse\n").unwrap();
    run(gpg().arg("--passphrase-file").arg(&pwfile).args([
        "--quick-gen-key",
        "Hotfix Signing <hotfix@example.com>",
        "rsa2048",
        "sign",
        "never",
    ]));
    let secret = run(gpg().arg("--passphrase-file").arg(&pwfile).args([
        "--armor",
        "--export-secret-keys",
        "hotfix@example.com",
    ]));
    let key = gnupg.join("secret.asc");
    std::fs::write(&key, secret).unwrap();

    let good = PackageSigner::load(&key, Some(&Passphrase::new("correct horse".into()))).unwrap();
    let sig = good.sign_binary(b"payload", 1_754_322_514).unwrap();
    assert!(!sig.is_empty());
    // A wrong or missing passphrase fails when the key is loaded, before
    // anything could be signed, and the error echoes no passphrase.
    let e = PackageSigner::load(&key, Some(&Passphrase::new("wrong".into())))
        .unwrap_err()
        .to_string();
    assert!(!e.contains("correct horse") && !e.contains("wrong"), "{e}");
    assert!(e.contains("passphrase"), "{e}");
    assert!(PackageSigner::load(&key, None).is_err());
    // A non-RSA key is refused when loaded.
    run(gpg().args([
        "--passphrase",
        "",
        "--quick-gen-key",
        "Ed <ed@example.com>",
        "ed25519",
        "sign",
        "never",
    ]));
    let ed = run(gpg().args([
        "--passphrase",
        "",
        "--armor",
        "--export-secret-keys",
        "ed@example.com",
    ]));
    std::fs::write(gnupg.join("ed.asc"), ed).unwrap();
    let e = PackageSigner::load(&gnupg.join("ed.asc"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("RSA") && e.contains("ed.asc"), "{e}");
}
