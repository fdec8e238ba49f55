//! Kernel-side fixtures: Debian's kernel ABI as apt sees it, small real
//! modules built with kbuild against Debian's linux-headers, module-signing
//! keys made the way the kernel's certs/Makefile makes them, the kernel's
//! own sign-file and kmod's modinfo. The signing, packaging and verify tests
//! compare khotfix against these, so they must be the real tools.

use super::process::run;
use super::tmp::{rand_suffix, scratch};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const SIGN_FILE: &str = "/usr/lib/linux-kbuild-6.1/scripts/sign-file";

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

/// The newest Debian 6.1 ABI in the archive older than the one
/// `linux-image-amd64` depends on (the previous security update), with its
/// headers still available.
pub fn debian_previous_abi() -> String {
    let current = debian_abi();
    let number = |abi: &str| -> Option<u32> {
        abi.strip_prefix("6.1.0-")?
            .strip_suffix("-amd64")?
            .parse()
            .ok()
    };
    let cur = number(&current).unwrap_or_else(|| panic!("unexpected ABI {current}"));
    let listed = run(Command::new("apt-cache").args([
        "search",
        "--names-only",
        r"^linux-headers-6\.1\.0-[0-9]+-amd64$",
    ]));
    let mut older: Vec<u32> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|p| number(p.strip_prefix("linux-headers-")?))
        .filter(|n| *n < cur)
        .collect();
    older.sort();
    let n = older
        .pop()
        .unwrap_or_else(|| panic!("no Debian ABI older than {current} in the archive"));
    format!("6.1.0-{n}-amd64")
}

/// One field of a module's .modinfo as kmod's `modinfo -F` prints it
/// (trimmed).
pub fn modinfo(ko: &Path, field: &str) -> String {
    run(Command::new("modinfo").args(["-F", field]).arg(ko))
        .trim()
        .to_string()
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

/// `khotfix keys generate --bits 2048 DIR`: the module- and package-signing
/// keys a run would use, in `dir`.
pub fn generate_keys(dir: &Path) {
    run(super::bin::khotfix()
        .args(["keys", "generate", "--bits", "2048"])
        .arg(dir));
}

/// The first of [`modules`] signed by `khotfix sign` with the module-signing
/// key [`generate_keys`] wrote to `keys`, written to `out`.
pub fn sign_module(keys: &Path, out: &Path) {
    run(super::bin::khotfix()
        .args(["sign", "--key"])
        .arg(keys.join("module-signing.key.pem"))
        .arg("--cert")
        .arg(keys.join("module-signing.crt.pem"))
        .arg("-o")
        .arg(out)
        .arg(&modules()[0]));
}
