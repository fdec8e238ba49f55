//! `khotfix sign` against the kernel's own scripts/sign-file, on real modules
//! built with kbuild against Debian's linux-headers, with keys made by
//! openssl: byte-identical output, re-signing, modinfo, openssl cms -verify,
//! key formats and the error paths.

mod support;

use std::path::Path;
use support::bin::khotfix;
use support::kernel::{modules, openssl_key, shared_key, sign_file};
use support::process::{output, run};
use support::tmp::{rand_suffix, tmpdir};

fn khotfix_sign(hash: &str, key: &Path, cert: &Path, input: &Path, out: &Path) {
    run(khotfix()
        .args(["sign", "--hash", hash, "--key"])
        .arg(key)
        .arg("--cert")
        .arg(cert)
        .arg("-o")
        .arg(out)
        .arg(input));
}

#[test]
fn byte_identical_to_sign_file_for_modules_keys_and_hashes() {
    let mods = modules();
    assert!(mods.len() >= 2);
    let mut compared = 0;
    for bits in [2048, 4096] {
        let k = shared_key(bits);
        for hash in ["sha256", "sha384", "sha512"] {
            for m in mods {
                let d = tmpdir();
                let (theirs, ours) = (d.join("theirs.ko"), d.join("ours.ko"));
                sign_file(hash, &k.key, &k.cert, m, &theirs);
                khotfix_sign(hash, &k.key, &k.cert, m, &ours);
                let (a, b) = (
                    std::fs::read(&theirs).unwrap(),
                    std::fs::read(&ours).unwrap(),
                );
                assert!(
                    a.len() > std::fs::read(m).unwrap().len(),
                    "sign-file appended nothing?"
                );
                assert!(
                    a == b,
                    "{} rsa{bits} {hash}: khotfix output differs from sign-file",
                    m.display()
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 12);
}

#[test]
fn in_place_signing_and_resigning_equals_signing_once() {
    let k = shared_key(2048);
    let other = openssl_key(2048);
    let m = &modules()[0];
    let d = tmpdir();
    let expected = d.join("expected.ko");
    sign_file("sha256", &k.key, &k.cert, m, &expected);

    // Sign in place with another key first, then re-sign with the right one.
    let work = d.join("work.ko");
    std::fs::copy(m, &work).unwrap();
    run(khotfix()
        .args(["sign", "--key"])
        .arg(&other.key)
        .arg("--cert")
        .arg(&other.cert)
        .arg(&work));
    assert_ne!(
        std::fs::read(&work).unwrap(),
        std::fs::read(&expected).unwrap()
    );
    let out = run(khotfix()
        .args(["sign", "--json", "--key"])
        .arg(&k.key)
        .arg("--cert")
        .arg(&k.cert)
        .arg(&work));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["replaced"], true);
    assert_eq!(
        std::fs::read(&work).unwrap(),
        std::fs::read(&expected).unwrap(),
        "re-signing must replace, not append"
    );

    // sign-file itself appends a second signature; we strip both.
    let twice = d.join("twice.ko");
    sign_file("sha256", &other.key, &other.cert, m, &twice);
    sign_file(
        "sha256",
        &other.key,
        &other.cert,
        &twice.clone(),
        &d.join("twice2.ko"),
    );
    khotfix_sign(
        "sha256",
        &k.key,
        &k.cert,
        &d.join("twice2.ko"),
        &d.join("fixed.ko"),
    );
    assert_eq!(
        std::fs::read(d.join("fixed.ko")).unwrap(),
        std::fs::read(&expected).unwrap()
    );
}

#[test]
fn modinfo_shows_signer_key_and_hash() {
    let k = shared_key(4096);
    let d = tmpdir();
    let out = d.join("m.ko");
    khotfix_sign("sha512", &k.key, &k.cert, &modules()[1], &out);
    let info = run(std::process::Command::new("modinfo").arg(&out));
    let field = |name: &str| {
        info.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{name}:"))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("modinfo has no {name}:\n{info}"))
    };
    assert_eq!(field("signer"), "khotfix test key 4096");
    assert_eq!(field("sig_hashalgo"), "sha512");
    assert_eq!(field("sig_id"), "PKCS#7");
    let serial = run(std::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&k.cert));
    let serial = serial.trim().trim_start_matches("serial=").to_string();
    assert_eq!(
        field("sig_key").replace(':', ""),
        serial,
        "sig_key must be the certificate serial"
    );
}

/// Split a signed module into (content, PKCS#7 DER) using the trailer.
fn split(signed: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let n = signed.len();
    let magic = b"~Module signature appended~\n";
    assert!(signed.ends_with(magic));
    let info = &signed[n - magic.len() - 12..n - magic.len()];
    assert_eq!(
        &info[..8],
        &[0, 0, 2, 0, 0, 0, 0, 0],
        "struct module_signature header"
    );
    let len = u32::from_be_bytes(info[8..12].try_into().unwrap()) as usize;
    let sig_end = n - magic.len() - 12;
    (
        signed[..sig_end - len].to_vec(),
        signed[sig_end - len..sig_end].to_vec(),
    )
}

#[test]
fn openssl_cms_verifies_the_detached_signature() {
    let k = shared_key(2048);
    let d = tmpdir();
    let out = d.join("m.ko");
    khotfix_sign("sha256", &k.key, &k.cert, &modules()[0], &out);
    let (content, sig) = split(&std::fs::read(&out).unwrap());
    assert_eq!(content, std::fs::read(&modules()[0]).unwrap());
    std::fs::write(d.join("content"), &content).unwrap();
    std::fs::write(d.join("sig.der"), &sig).unwrap();
    let verify = |content: &Path| {
        output(
            std::process::Command::new("openssl")
                .args([
                    "cms",
                    "-verify",
                    "-binary",
                    "-inform",
                    "DER",
                    "-noverify",
                    "-in",
                ])
                .arg(d.join("sig.der"))
                .arg("-content")
                .arg(content)
                .arg("-certfile")
                .arg(&k.cert)
                .args(["-out", "/dev/null"]),
        )
    };
    let ok = verify(&d.join("content"));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // No certificates and no signed attributes inside, as the kernel requires.
    let dump = run(std::process::Command::new("openssl")
        .args(["cms", "-cmsout", "-print", "-inform", "DER", "-in"])
        .arg(d.join("sig.der")));
    let after = |field: &str| {
        let mut lines = dump.lines().skip_while(|l| l.trim() != field);
        lines
            .nth(1)
            .map(|l| l.trim().to_string())
            .unwrap_or_else(|| panic!("no {field} in\n{dump}"))
    };
    assert_eq!(after("certificates:"), "<ABSENT>");
    assert_eq!(after("signedAttrs:"), "<ABSENT>");
    // A flipped byte in the module fails verification.
    let mut bad = content.clone();
    bad[100] ^= 1;
    std::fs::write(d.join("bad"), &bad).unwrap();
    assert!(!verify(&d.join("bad")).status.success());
}

#[test]
fn key_formats_der_combined_pem_and_encrypted() {
    let k = shared_key(2048);
    let m = &modules()[0];
    let d = tmpdir();
    let expected = d.join("expected.ko");
    sign_file("sha256", &k.key, &k.cert, m, &expected);
    let expected = std::fs::read(expected).unwrap();
    let check = |key: &Path, cert: &Path, envpass: Option<&str>, passfile: Option<&Path>| {
        let out = d.join(format!("o-{}.ko", rand_suffix()));
        let mut c = khotfix();
        c.args(["sign", "--key"])
            .arg(key)
            .arg("--cert")
            .arg(cert)
            .arg("-o")
            .arg(&out)
            .arg(m);
        c.env_remove("KHOTFIX_SIGN_PASSPHRASE");
        if let Some(p) = envpass {
            c.env("KHOTFIX_SIGN_PASSPHRASE", p);
        }
        if let Some(f) = passfile {
            c.arg("--passphrase-file").arg(f);
        }
        run(&mut c);
        assert_eq!(
            std::fs::read(&out).unwrap(),
            expected,
            "key {}",
            key.display()
        );
    };
    // DER key (PKCS#8 and PKCS#1) and DER certificate.
    let (kder, k1der, cder) = (d.join("k8.der"), d.join("k1.der"), d.join("c.der"));
    run(std::process::Command::new("openssl")
        .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in"])
        .arg(&k.key)
        .arg("-out")
        .arg(&kder));
    run(std::process::Command::new("openssl")
        .args(["rsa", "-traditional", "-outform", "DER", "-in"])
        .arg(&k.key)
        .arg("-out")
        .arg(&k1der));
    run(std::process::Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&k.cert)
        .arg("-out")
        .arg(&cder));
    check(&kder, &cder, None, None);
    check(&k1der, &k.cert, None, None);
    // The kernel's signing_key.pem: key and certificate in one file.
    let combined = d.join("signing_key.pem");
    let mut both = std::fs::read(&k.key).unwrap();
    both.extend(std::fs::read(&k.cert).unwrap());
    std::fs::write(&combined, both).unwrap();
    check(&combined, &combined, None, None);
    // Encrypted PKCS#8: passphrase from the environment or a file, never argv.
    let enc = d.join("enc.pem");
    std::fs::write(d.join("pw"), "s3cret-pass\n").unwrap();
    run(std::process::Command::new("openssl")
        .args(["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout"])
        .arg(format!("file:{}", d.join("pw").display()))
        .arg("-in")
        .arg(&k.key)
        .arg("-out")
        .arg(&enc));
    check(&enc, &k.cert, Some("s3cret-pass"), None);
    check(&enc, &k.cert, None, Some(&d.join("pw")));
    // Wrong or missing passphrase: clear error, passphrase not echoed, module untouched.
    let target = d.join("untouched.ko");
    std::fs::copy(m, &target).unwrap();
    for pass in [Some("wrong-pass-xyz"), None] {
        let mut c = khotfix();
        c.args(["sign", "--key"])
            .arg(&enc)
            .arg("--cert")
            .arg(&k.cert)
            .arg(&target)
            .env_remove("KHOTFIX_SIGN_PASSPHRASE");
        if let Some(p) = pass {
            c.env("KHOTFIX_SIGN_PASSPHRASE", p);
        }
        let o = output(&mut c);
        assert_eq!(o.status.code(), Some(2));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("enc.pem"), "{err}");
        assert!(
            err.contains(if pass.is_some() {
                "cannot decrypt"
            } else {
                "KHOTFIX_SIGN_PASSPHRASE"
            }),
            "{err}"
        );
        assert!(
            !err.contains("wrong-pass-xyz") && !err.contains("BEGIN"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(std::fs::read(&target).unwrap(), std::fs::read(m).unwrap());
}

#[test]
fn bad_inputs_are_refused_cleanly() {
    let k = shared_key(2048);
    let other = shared_key(4096);
    let d = tmpdir();
    let m = d.join("m.ko");
    std::fs::copy(&modules()[0], &m).unwrap();
    // Key that does not belong to the certificate.
    let o = output(
        khotfix()
            .args(["sign", "--key"])
            .arg(&k.key)
            .arg("--cert")
            .arg(&other.cert)
            .arg(&m),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not match the certificate"));
    // Not a module.
    std::fs::write(d.join("x.ko"), b"not elf at all").unwrap();
    let o = output(
        khotfix()
            .args(["sign", "--key"])
            .arg(&k.key)
            .arg("--cert")
            .arg(&k.cert)
            .arg(d.join("x.ko")),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not an ELF"));
    assert_eq!(std::fs::read(d.join("x.ko")).unwrap(), b"not elf at all");
    // Unsupported hash.
    let o = output(
        khotfix()
            .args(["sign", "--hash", "sha1", "--key"])
            .arg(&k.key)
            .arg("--cert")
            .arg(&k.cert)
            .arg(&m),
    );
    assert!(!o.status.success());
    // Certificate file that is a key.
    let o = output(
        khotfix()
            .args(["sign", "--key"])
            .arg(&k.key)
            .arg("--cert")
            .arg(&k.key)
            .arg(&m),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no CERTIFICATE block"));
    assert_eq!(
        std::fs::read(&m).unwrap(),
        std::fs::read(&modules()[0]).unwrap()
    );
    // Nothing left behind.
    let names: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}
