//! `khotfix publish`, `khotfix repo verify`.
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use khotfix::keys;
use khotfix::publish::{self, Compression, PublishOptions};
use khotfix::util::exit;
use std::path::PathBuf;

#[derive(Args)]
pub struct PublishArgs {
    /// Repository directory (created if missing).
    #[arg(long)]
    pub repo: PathBuf,
    /// RPMs to add (none: just regenerate and re-sign the metadata).
    pub rpms: Vec<PathBuf>,
    /// Keep only the N newest releases (rpm EVR order) of each package name.
    #[arg(long)]
    pub keep: Option<usize>,
    /// Armored OpenPGP secret key that signs repomd.xml. The passphrase comes
    /// from KHOTFIX_SIGN_PASSPHRASE or --passphrase-file, never the command line.
    #[arg(long, env = "KHOTFIX_GPG_KEY")]
    pub gpg_key: Option<PathBuf>,
    /// File whose first line is the signing key's passphrase.
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// Metadata compression: gz (default; EL7 reads only gz) or zstd.
    #[arg(long, default_value = "gz")]
    pub compress: String,
    /// The URL that serves the repository directory: the baseurl of every
    /// khotfix.repo (default: a placeholder to edit). Also needed for the
    /// khotfix-release RPMs, which are built only when it is given.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Replace a package whose name-epoch-version-release-arch is already in
    /// the repository with different content (refused without this).
    #[arg(long)]
    pub replace: bool,
    /// Sign unsigned packages with the repository key (RSA) instead of
    /// refusing them. Packages signed by another key are always refused.
    #[arg(long)]
    pub sign: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum RepoCmd {
    /// Check every part (the top level and each DIR/<rpm_dist>): every
    /// package (size, sha256, signature) and the metadata (checksums,
    /// repomd.xml.asc), and the khotfix-release RPMs' signatures. Exit 1 on
    /// any mismatch, 2 if unreadable.
    Verify {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub fn publish(a: PublishArgs) -> Result<i32> {
    let compress = Compression::parse(&a.compress)?;
    let key_path = keys::pgp_key_path(a.gpg_key.clone()).context(
        "no signing key: pass --gpg-key FILE or set KHOTFIX_GPG_KEY (repomd.xml must be signed)",
    )?;
    let pass = keys::read_passphrase(a.passphrase_file.as_deref())?;
    let key = keys::PackageSigner::load_unlocked(&key_path, pass.as_ref())?;
    let signer = a.sign.then(|| key.clone());
    let report = publish::publish_checked(
        &PublishOptions {
            repo: a.repo,
            rpms: a.rpms,
            keep: a.keep,
            key,
            compress,
            base_url: a.base_url,
            reporter: khotfix::progress::SharedReporter::new(super::progress::CountDisplay::new(
                khotfix::progress::ProgressMode::detect(),
            )),
        },
        &publish::Safety {
            replace: a.replace,
            signer,
        },
    )?;
    if a.json {
        super::print_json(&report)?;
    } else {
        for f in &report.added {
            println!("added   {f}");
        }
        for f in &report.removed {
            println!("removed {f}");
        }
        for p in &report.parts {
            println!(
                "{}: {} packages, client .repo {}",
                p.dist.as_deref().unwrap_or("(top level)"),
                p.packages,
                p.repo_file
            );
        }
        for f in &report.release_rpms {
            println!("release {f}");
        }
        for n in &report.notes {
            println!("note: {n}");
        }
        println!(
            "{}: {} packages ({} read, {} cached), revision {}, signed by {}",
            report.repo,
            report.packages,
            report.read,
            report.cached,
            report.revision,
            report.key_fingerprint
        );
    }
    Ok(exit::OK)
}

pub fn repo(c: RepoCmd) -> Result<i32> {
    match c {
        RepoCmd::Verify { dir, json } => {
            let report = publish::verify_repo(&dir)?;
            if json {
                super::print_json(&report)?;
            } else {
                for p in &report.problems {
                    println!("{p}");
                }
                if report.ok() {
                    println!(
                        "{}: OK ({} packages, revision {})",
                        report.repo, report.packages, report.revision
                    );
                }
            }
            Ok(if report.ok() { exit::OK } else { exit::FAILED })
        }
    }
}
