//! Helpers shared by the sign/keys/package integration tests (included with
//! `#[path]`). Everything here drives real tools: kbuild against Debian's
//! linux-headers, openssl, the kernel's sign-file, rpm.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub const SIGN_FILE: &str = "/usr/lib/linux-kbuild-6.1/scripts/sign-file";

pub fn khotfix() -> Command {
    Command::new(env!("CARGO_BIN_EXE_khotfix"))
}

/// Run and require success; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"))
}

/// Debian's current kernel ABI (`6.1.0-NN-amd64`), discovered the way the
/// guide says: from linux-image-amd64's dependency.
pub fn debian_abi() -> String {
    let out = run(Command::new("apt-cache").args(["depends", "linux-image-amd64"]));
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: linux-image-"))
        .find(|v| v.ends_with("-amd64"))
        .map(str::to_string)
        .expect("apt-cache depends linux-image-amd64 names no linux-image-<abi>")
}

/// A temp dir that lives for the whole test process.
fn scratch() -> &'static Path {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("khotfix-sign-test-")
            .tempdir()
            .unwrap()
            .keep()
    })
}

const MODULES: &[(&str, &str)] = &[
    (
        "khf_hello",
        "#include <linux/module.h>\n#include <linux/init.h>\n\
         static int __init khf_init(void) { pr_info(\"khf_hello\\n\"); return 0; }\n\
         static void __exit khf_exit(void) { }\n\
         module_init(khf_init);\nmodule_exit(khf_exit);\nMODULE_LICENSE(\"GPL\");\n",
    ),
    (
        "khf_param",
        "#include <linux/module.h>\n#include <linux/moduleparam.h>\n#include <linux/slab.h>\n\
         static int count = 3;\nmodule_param(count, int, 0444);\n\
         static char *buf;\n\
         static int __init khf_init(void) { buf = kmalloc(64 * count, GFP_KERNEL); return buf ? 0 : -ENOMEM; }\n\
         static void __exit khf_exit(void) { kfree(buf); }\n\
         module_init(khf_init);\nmodule_exit(khf_exit);\nMODULE_LICENSE(\"GPL\");\n\
         MODULE_DESCRIPTION(\"khotfix signing test module with a parameter\");\n",
    ),
];

/// Two small real modules built with kbuild against Debian's headers (once
/// per test process).
pub fn modules() -> &'static Vec<PathBuf> {
    static M: OnceLock<Vec<PathBuf>> = OnceLock::new();
    M.get_or_init(|| {
        let abi = debian_abi();
        let headers = PathBuf::from(format!("/usr/src/linux-headers-{abi}"));
        assert!(
            headers.is_dir(),
            "{} missing (install linux-headers-amd64)",
            headers.display()
        );
        let dir = scratch().join("modules");
        std::fs::create_dir_all(&dir).unwrap();
        let mut kbuild = String::from("obj-m :=");
        for (name, src) in MODULES {
            std::fs::write(dir.join(format!("{name}.c")), src).unwrap();
            kbuild.push_str(&format!(" {name}.o"));
        }
        std::fs::write(dir.join("Kbuild"), format!("{kbuild}\n")).unwrap();
        run(Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(&headers)
            .arg(format!("M={}", dir.display()))
            .arg("modules"));
        MODULES
            .iter()
            .map(|(n, _)| dir.join(format!("{n}.ko")))
            .collect()
    })
}

/// An openssl-generated module-signing key and self-signed certificate, as
/// the kernel's certs/Makefile makes them (`openssl req -new -nodes -x509`).
pub struct TestKey {
    pub key: PathBuf,
    pub cert: PathBuf,
}

pub fn openssl_key(bits: u32) -> TestKey {
    let dir = scratch().join(format!("key-{bits}-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    run(Command::new("openssl")
        .args([
            "req", "-new", "-nodes", "-utf8", "-sha256", "-days", "36500", "-batch", "-x509",
        ])
        .args([
            "-subj",
            &format!("/O=khotfix test/CN=khotfix test key {bits}"),
        ])
        .args(["-newkey", &format!("rsa:{bits}"), "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    TestKey { key, cert }
}

/// Cached per bit size: RSA 4096 generation takes seconds.
pub fn shared_key(bits: u32) -> &'static TestKey {
    static K2048: OnceLock<TestKey> = OnceLock::new();
    static K4096: OnceLock<TestKey> = OnceLock::new();
    match bits {
        2048 => K2048.get_or_init(|| openssl_key(2048)),
        4096 => K4096.get_or_init(|| openssl_key(4096)),
        _ => panic!("no shared key of {bits} bits"),
    }
}

pub fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn tmpdir() -> PathBuf {
    let d = scratch().join(format!("t-{}", rand_suffix()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Sign `module` with the kernel's sign-file into `dest`.
pub fn sign_file(hash: &str, key: &Path, cert: &Path, module: &Path, dest: &Path) {
    run(Command::new(SIGN_FILE)
        .arg(hash)
        .arg(key)
        .arg(cert)
        .arg(module)
        .arg(dest));
}
