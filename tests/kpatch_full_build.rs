//! Opt-in: a kpatch target whose patch changes built-in code, which needs
//! kpatch-build's full `vmlinux modules` build of Debian's kernel (hours on
//! 2 cores, so never in the suite's default run).
//!
//! The patch is kpatch's classic first example on 6.1's
//! fs/proc/cmdline.c: `cmdline_proc_show` appends " kpatch=1", in
//! `proc.o`, which is `obj-y` (built into vmlinux). The test runs `khotfix
//! run` over a one-target recipe for Debian's current ABI and checks that
//! prepare chose a full build (and said why, with an estimate), that the
//! build passed, and that verify's qemu boot found the `vmlinux` object
//! patched.
//!
//! Run with `cargo test --test kpatch_full_build -- --ignored` (the
//! container settings of `.ci/env`, and the kpatch source, as for the
//! suite). In the suite it is reported as ignored, with the reason.

mod support;

use support::bin::khotfix;

use std::path::Path;

const PATCH: &str = "Opt-in test input (tests/kpatch_full_build.rs): built-in code.

--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -7,7 +7,7 @@
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
 \tseq_puts(m, saved_command_line);
-\tseq_putc(m, '\\n');
+\tseq_puts(m, \" kpatch=1\\n\");
 \treturn 0;
 }
 
";

const RECIPE: &str = r#"[hotfix]
id = 30099
name = "cmdline-full-build"
summary = "Opt-in test: a livepatch of built-in code"
description = "Appends kpatch=1 to /proc/cmdline (kpatch's first example)."
version = "1.0"
backend = "kpatch"

[[hotfix.changelog]]
date = "2026-12-02"
author = "khotfix tests <tests@example.com>"
text = "Opt-in full-build test."

[[target]]
name = "debian12-kpatch"
distro = "debian12"
select = "newest"
ranges = [{ from = "6.1.0-1", to = "6.1.0-9999" }]
patches = ["patches/cmdline.patch"]
"#;

#[test]
#[ignore = "opt-in: a full vmlinux+modules kpatch build, hours on 2 cores; run with -- --ignored"]
fn a_patch_to_built_in_code_builds_vmlinux_and_patches_it() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("recipe/patches")).unwrap();
    std::fs::write(w.join("recipe/patches/cmdline.patch"), PATCH).unwrap();
    std::fs::write(w.join("recipe/r.toml"), RECIPE).unwrap();
    let out = w.join("out");
    let o = khotfix()
        .arg("run")
        .arg(w.join("recipe/r.toml"))
        .args(["--from-repos", "--json", "--out"])
        .arg(&out)
        .env("KHOTFIX_BUILD_TIMEOUT", "12h")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(
            "full kernel build (vmlinux modules) because fs/proc/cmdline.c is built into vmlinux"
        ),
        "prepare did not announce the full build: {stderr}"
    );
    assert_eq!(o.status.code(), Some(0), "khotfix run: {stderr}");
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let job = &r["jobs"][0];
    let verify = job_verify(&out, job["id"].as_str().unwrap());
    let patched = verify["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "livepatch-patched")
        .expect("livepatch-patched check");
    assert_eq!(patched["outcome"], "pass", "{patched}");
    assert!(
        patched["message"].as_str().unwrap().contains("vmlinux=1"),
        "{patched}"
    );
}

fn job_verify(out: &Path, id: &str) -> serde_json::Value {
    let p = out.join("jobs").join(id).join("verify/verify.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}
