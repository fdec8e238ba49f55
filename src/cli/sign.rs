//! `khotfix sign`, `khotfix keys generate`, `khotfix package`.
//!
//! Secrets never come from argv: passphrases are read from
//! `KHOTFIX_SIGN_PASSPHRASE` or from `--passphrase-file`.
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use khotfix::keys::{self, ModuleKey, PackageSigner};
use khotfix::sign::{self, HashAlgo};
use khotfix::util::exit;
use std::path::PathBuf;

#[derive(Args)]
pub struct SignArgs {
    /// Module-signing private key (PEM or DER; PKCS#8, encrypted PKCS#8 or PKCS#1).
    #[arg(long)]
    pub key: PathBuf,
    /// X.509 certificate of the key (PEM or DER).
    #[arg(long)]
    pub cert: PathBuf,
    /// Digest: sha256, sha384 or sha512.
    #[arg(long, default_value = "sha256")]
    pub hash: HashAlgo,
    /// File holding the key's passphrase (else KHOTFIX_SIGN_PASSPHRASE).
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// Write the signed module here instead of replacing FILE.ko in place.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    /// The module(s) to sign.
    #[arg(required = true)]
    pub module: Vec<PathBuf>,
}

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Generate development signing keys into DIR: a module-signing X.509
    /// certificate and RSA key, and an OpenPGP RSA key for packages and repodata.
    Generate {
        dir: PathBuf,
        /// RSA key size for both keys.
        #[arg(long, default_value_t = 4096)]
        bits: usize,
        /// Subject CN of the module-signing certificate.
        #[arg(long, default_value = "khotfix module signing key")]
        common_name: String,
        /// User id of the OpenPGP key.
        #[arg(long, default_value = "khotfix package signing <khotfix@localhost>")]
        user_id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct PackageArgs {
    /// The hotfix recipe (TOML).
    pub recipe: PathBuf,
    /// Only this kernel release (as `uname -r` prints it).
    #[arg(long)]
    pub kernel: Option<String>,
    /// The build stage's output directory (`khotfix build --out`; holds
    /// <job id>/kpatch-<id>.ko).
    #[arg(long, default_value = "khotfix-build")]
    pub build_dir: PathBuf,
    /// Where the RPMs go.
    #[arg(long, default_value = "khotfix-rpms")]
    pub out_dir: PathBuf,
    /// Sign the built modules (in place, replacing any signature) with this
    /// module-signing key before packaging; needs --module-cert.
    #[arg(long, requires = "module_cert")]
    pub module_key: Option<PathBuf>,
    /// Certificate for --module-key.
    #[arg(long, requires = "module_key")]
    pub module_cert: Option<PathBuf>,
    /// Digest for --module-key signing.
    #[arg(long, default_value = "sha256")]
    pub hash: HashAlgo,
    /// Armored OpenPGP secret key (RSA) that signs the packages (else
    /// KHOTFIX_GPG_KEY).
    #[arg(long, env = "KHOTFIX_GPG_KEY")]
    pub pgp_key: Option<PathBuf>,
    /// File holding the OpenPGP key's passphrase (else KHOTFIX_SIGN_PASSPHRASE).
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// Payload compression: xz or gzip (EL7's rpm cannot read zstd).
    #[arg(long, default_value = "xz")]
    pub compression: khotfix::package::Compression,
    #[arg(long)]
    pub json: bool,
}

pub fn sign(a: SignArgs) -> anyhow::Result<i32> {
    if a.output.is_some() && a.module.len() > 1 {
        bail!("-o/--output takes exactly one module");
    }
    let pass = keys::read_passphrase(a.passphrase_file.as_deref())?;
    let key = ModuleKey::load(&a.key, &a.cert, pass.as_ref())?;
    let mut reports = Vec::new();
    for m in &a.module {
        let out = a.output.clone().unwrap_or_else(|| m.clone());
        let r = sign::sign_file(m, &out, &key, a.hash)?;
        if !a.json {
            println!(
                "signed {} ({}, signer {:?}{})",
                r.output.display(),
                r.hash,
                r.signer,
                if r.replaced {
                    ", replaced existing signature"
                } else {
                    ""
                }
            );
        }
        reports.push(r);
    }
    if a.json {
        super::print_json(&reports)?;
    }
    Ok(exit::OK)
}

pub fn keys(c: KeysCmd) -> anyhow::Result<i32> {
    match c {
        KeysCmd::Generate {
            dir,
            bits,
            common_name,
            user_id,
            json,
        } => {
            let opts = keys::GenerateOptions {
                bits,
                common_name,
                user_id,
                ..Default::default()
            };
            let g = keys::generate(&dir, &opts)?;
            if json {
                super::print_json(&g)?;
            } else {
                println!("module signing key:   {}", g.module_key.display());
                println!(
                    "module signing cert:  {} (DER: {})",
                    g.module_cert.display(),
                    g.module_cert_der.display()
                );
                println!("OpenPGP secret key:   {}", g.pgp_secret.display());
                println!(
                    "OpenPGP public key:   {} (fingerprint {})",
                    g.pgp_public.display(),
                    g.pgp_fingerprint
                );
                println!();
                println!("On each host, trust these keys:");
                for e in &g.enroll {
                    println!("  {e}");
                }
                println!(
                    "These are development keys without passphrases; keep production keys offline."
                );
            }
            Ok(exit::OK)
        }
    }
}

pub fn package(a: PackageArgs) -> anyhow::Result<i32> {
    let recipe = khotfix::recipe::Recipe::load(&a.recipe).map_err(|e| anyhow::anyhow!("{e}"))?;
    let pass = keys::read_passphrase(a.passphrase_file.as_deref())?;
    let key_path = keys::pgp_key_path(a.pgp_key.clone())
        .context("no package signing key: pass --pgp-key FILE or set KHOTFIX_GPG_KEY")?;
    let signer = PackageSigner::load(&key_path, pass.as_ref())?;
    let only = match &a.kernel {
        Some(k) => Some(khotfix::kernel::KernelRelease::parse(k)?),
        None => None,
    };
    let opts = khotfix::package::BuildOptions {
        compression: a.compression,
        ..khotfix::package::BuildOptions::from_env()?
    };
    let inputs = khotfix::package::inputs_from_build_dir(&recipe, &a.build_dir, only.as_ref())
        .with_context(|| format!("collecting built modules from {}", a.build_dir.display()))?;
    if inputs.is_empty() {
        bail!(
            "no built modules for {} in {}",
            a.recipe.display(),
            a.build_dir.display()
        );
    }
    if let (Some(k), Some(c)) = (&a.module_key, &a.module_cert) {
        let mkey = ModuleKey::load(k, c, pass.as_ref())?;
        for input in &inputs {
            sign::sign_file(&input.ko_path, &input.ko_path, &mkey, a.hash)?;
        }
    }
    let mut outputs = Vec::new();
    for input in &inputs {
        let out = khotfix::package::build_rpm(input, &signer, &a.out_dir, &opts)?;
        if !a.json {
            println!("wrote {}", out.path.display());
        }
        outputs.push(out);
    }
    if a.json {
        super::print_json(&outputs)?;
    }
    Ok(exit::OK)
}
