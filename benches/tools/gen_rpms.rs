//! Generate many small, realistic kernel-hotfix-like RPMs quickly (in-process
//! with the `rpm` crate, no rpmbuild), for `benches/publish.sh`.
//!
//! Usage: cargo run --release --example gen_rpms -- OUTDIR COUNT [PREFIX]
//! Writes OUTDIR/kernel-hotfix-<PREFIX><i>-6.1.0-56-1.0-1.x86_64.rpm.

use rpm::{Dependency, FileOptions, PackageBuilder};
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: gen_rpms OUTDIR COUNT [PREFIX]");
        std::process::exit(2);
    }
    let out = PathBuf::from(&args[1]);
    let count: usize = match args[2].parse() {
        Ok(n) => n,
        Err(_) => {
            eprintln!("gen_rpms: COUNT {:?} is not a number", args[2]);
            std::process::exit(2);
        }
    };
    let prefix = args.get(3).cloned().unwrap_or_else(|| "g".into());
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("gen_rpms: {}: {e}", out.display());
        std::process::exit(2);
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let out = &out;
            let prefix = &prefix;
            s.spawn(move || {
                for i in (t..count).step_by(threads) {
                    if let Err(e) = one(out, prefix, i) {
                        eprintln!("gen_rpms: package {i}: {e}");
                        std::process::exit(1);
                    }
                }
            });
        }
    });
}

fn one(out: &std::path::Path, prefix: &str, i: usize) -> Result<(), rpm::Error> {
    let id = format!("{prefix}{i}");
    let name = format!("kernel-hotfix-{id}-6.1.0-56");
    let kdir = "/usr/lib/kpatch/6.1.0-56";
    let mut b = PackageBuilder::new(
        &name,
        "1.0",
        "GPL-2.0-only",
        "x86_64",
        "livepatch hotfix for 6.1.0-56",
    );
    b.using_config(rpm::BuildConfig::v4().compression(rpm::CompressionType::Gzip));
    b.release("1")
        .description(format!("Kernel livepatch hotfix {id}: fixes a use-after-free in the eBPF LRU map & friends <generated>."))
        .url("https://example.invalid/hotfix")
        .vendor("khotfix bench")
        .packager("Kernel Team <kernel@example.invalid>")
        .group("System Environment/Kernel")
        .requires(Dependency::greater_eq("kpatch", "0.9"))
        .requires(Dependency::eq("kernel-uname-r", "6.1.0-56-amd64"))
        .provides(Dependency::eq(format!("kernel-hotfix({id})"), "1.0-1"))
        .conflicts(Dependency::less(format!("kernel-hotfix-{id}"), "1.0"))
        .add_changelog_entry("Kernel Team <kernel@example.invalid> - 1.0-1", format!("- hotfix {id}"), 1_790_000_000u32)
        .add_changelog_entry("Kernel Team <kernel@example.invalid> - 0.9-1", "- initial", 1_780_000_000u32);
    b.with_file_contents(
        format!("livepatch module {id}\n").repeat(200).into_bytes(),
        FileOptions::new(format!("{kdir}/livepatch_{id}.ko")).mode(0o100644),
    )?;
    b.with_file_contents(
        format!("[hotfix]\nid = {id}\n").into_bytes(),
        FileOptions::new(format!("/etc/khotfix/{id}.conf")).config(),
    )?;
    b.with_file_contents(
        format!("#!/bin/sh\necho {id}\n").into_bytes(),
        FileOptions::new(format!("/usr/sbin/khotfix-{id}-status")).mode(0o100755),
    )?;
    b.with_file_contents(
        format!("README for {id}\n").into_bytes(),
        FileOptions::new(format!("/usr/share/doc/{name}/README")).doc(),
    )?;
    let pkg = b.build()?;
    pkg.write_file(out.join(format!("{name}-1.0-1.x86_64.rpm")))
}
