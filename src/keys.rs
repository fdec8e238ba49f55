//! Signing keys: loading the module-signing key and certificate and the
//! OpenPGP package key from files, and generating development keys.
//!
//! Production keys are only ever read from files. Passphrases come from the
//! `KHOTFIX_SIGN_PASSPHRASE` environment variable or a file, never argv
//! ([`PassphraseSource`]); the OpenPGP key file from `--pgp-key`/`--gpg-key`
//! or `KHOTFIX_GPG_KEY`.
//! Errors name the file and what is wrong with it, never key material.

use anyhow::{anyhow, bail, Context, Result};
use der::referenced::OwnedToRef;
use der::{Decode, Encode};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::RsaPrivateKey;
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};
use x509_cert::Certificate;
use zeroize::Zeroizing;

mod pgp_rsa;

/// Environment variable holding the passphrase of an encrypted signing key
/// (the module-signing key and the OpenPGP key alike).
pub const PASSPHRASE_ENV: &str = "KHOTFIX_SIGN_PASSPHRASE";
/// The name `publish` used to read; still read, with a warning on stderr.
pub const PASSPHRASE_ENV_DEPRECATED: &str = "KHOTFIX_GPG_PASSPHRASE";
/// Environment variable naming the armored OpenPGP secret key file
/// (`package --pgp-key`, `publish --gpg-key`).
pub const PGP_KEY_ENV: &str = "KHOTFIX_GPG_KEY";
/// The name `package` used to read; still read, with a warning on stderr.
pub const PGP_KEY_ENV_DEPRECATED: &str = "KHOTFIX_PGP_KEY";

/// A passphrase: zeroed on drop, never printed.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    pub fn new(s: String) -> Self {
        Passphrase(Zeroizing::new(s))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// Where a signing key's passphrase comes from; every command that unlocks
/// a key reads it through this one type, so they agree on the variable name
/// and on what an empty value means. Never argv: a passphrase on a command
/// line is visible to every user of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassphraseSource {
    /// `--passphrase-file`: its first line (trailing newline removed); an
    /// empty first line is an error.
    File(PathBuf),
    /// [`PASSPHRASE_ENV`] (or the deprecated [`PASSPHRASE_ENV_DEPRECATED`]);
    /// unset or empty means the key is not protected.
    Env,
}

impl PassphraseSource {
    /// The file when one was given, else the environment.
    pub fn new(file: Option<&Path>) -> Self {
        match file {
            Some(f) => PassphraseSource::File(f.to_path_buf()),
            None => PassphraseSource::Env,
        }
    }

    /// The passphrase, or `None` when there is none. Errors name the file,
    /// never the passphrase.
    pub fn read(&self) -> Result<Option<Passphrase>> {
        match self {
            PassphraseSource::File(path) => {
                let text = Zeroizing::new(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("reading passphrase file {}", path.display()))?,
                );
                let line = text.lines().next().unwrap_or("");
                if line.is_empty() {
                    bail!("passphrase file {} is empty", path.display());
                }
                Ok(Some(Passphrase::new(line.to_string())))
            }
            PassphraseSource::Env => {
                Ok(env_or_deprecated(PASSPHRASE_ENV, PASSPHRASE_ENV_DEPRECATED)
                    .map(Passphrase::new))
            }
        }
    }
}

/// The passphrase for encrypted keys: [`PassphraseSource::new`]`(file).read()`.
pub fn read_passphrase(file: Option<&Path>) -> Result<Option<Passphrase>> {
    PassphraseSource::new(file).read()
}

/// The OpenPGP key file given on the command line (or in [`PGP_KEY_ENV`],
/// which clap reads), else the deprecated [`PGP_KEY_ENV_DEPRECATED`].
pub fn pgp_key_path(arg: Option<PathBuf>) -> Option<PathBuf> {
    arg.or_else(|| env_or_deprecated(PGP_KEY_ENV, PGP_KEY_ENV_DEPRECATED).map(PathBuf::from))
}

/// The non-empty value of `name`, else of `old` with a one-line warning on
/// stderr naming both variables (never the value).
fn env_or_deprecated(name: &str, old: &str) -> Option<String> {
    let get = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    get(name).or_else(|| {
        let v = get(old)?;
        eprintln!("warning: {old} is deprecated; set {name} instead");
        Some(v)
    })
}

/// One `-----BEGIN <label>-----` … `-----END <label>-----` block out of a
/// possibly multi-block PEM file (the kernel's `signing_key.pem` holds the
/// key and the certificate together).
fn pem_block<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = text[start..].find(&end)? + start + end.len();
    Some(&text[start..stop])
}

fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// An RSA private key as PKCS#1 `RSAPrivateKey` DER (what libcrypto loads),
/// zeroed on drop.
pub type Pkcs1Der = Zeroizing<Vec<u8>>;

/// Load an RSA private key: PEM (PKCS#8, encrypted PKCS#8, PKCS#1) or DER
/// (PKCS#8, encrypted PKCS#8, PKCS#1).
pub fn load_rsa_key(path: &Path, pass: Option<&Passphrase>) -> Result<Pkcs1Der> {
    let bytes = Zeroizing::new(
        std::fs::read(path).with_context(|| format!("reading key {}", path.display()))?,
    );
    parse_rsa_key(&bytes, pass).map_err(|e| anyhow!("key {}: {e}", path.display()))
}

fn need_pass(pass: Option<&Passphrase>) -> Result<&Passphrase> {
    pass.ok_or_else(|| {
        anyhow!("the key is encrypted; set {PASSPHRASE_ENV} or pass --passphrase-file")
    })
}

/// The key's PKCS#1 bytes, unwrapped (and decrypted) from whichever form it
/// came in; its structure is checked, its numbers are left to libcrypto and
/// to the comparison with the certificate (no bignum arithmetic here: the
/// `rsa` crate's checks cost a quarter of a millisecond per signing).
fn parse_rsa_key(bytes: &[u8], pass: Option<&Passphrase>) -> Result<Pkcs1Der> {
    // Error texts below come from us, not from the parsers, so no key bytes leak.
    let der = if is_pem(bytes) {
        let text =
            std::str::from_utf8(bytes).map_err(|_| anyhow!("PEM file is not valid UTF-8"))?;
        let decode = |b: &str, what: &str| {
            der::SecretDocument::from_pem(b)
                .map(|(_, doc)| doc)
                .map_err(|_| anyhow!("malformed {what}"))
        };
        if let Some(b) = pem_block(text, "ENCRYPTED PRIVATE KEY") {
            let doc = decode(b, "encrypted PKCS#8 key")?;
            pkcs8_to_pkcs1(decrypt_pkcs8(doc.as_bytes(), need_pass(pass)?)?.as_bytes())?
        } else if let Some(b) = pem_block(text, "RSA PRIVATE KEY") {
            if b.contains("Proc-Type: 4,ENCRYPTED") {
                bail!("legacy OpenSSL-encrypted PEM is not supported; convert it with `openssl pkcs8 -topk8 -v2 aes-256-cbc`");
            }
            let doc = decode(b, "PKCS#1 RSA private key")?;
            Zeroizing::new(doc.as_bytes().to_vec())
        } else if let Some(b) = pem_block(text, "PRIVATE KEY") {
            let doc = decode(b, "PKCS#8 private key, or not an RSA key")?;
            pkcs8_to_pkcs1(doc.as_bytes())?
        } else {
            bail!("no PRIVATE KEY block in PEM file");
        }
    } else if let Ok(k) = pkcs8_to_pkcs1(bytes) {
        k
    } else if rsa::pkcs1::RsaPrivateKey::from_der(bytes).is_ok() {
        Zeroizing::new(bytes.to_vec())
    } else if pkcs8::EncryptedPrivateKeyInfo::from_der(bytes).is_ok() {
        pkcs8_to_pkcs1(decrypt_pkcs8(bytes, need_pass(pass)?)?.as_bytes())?
    } else {
        bail!("not an RSA private key in PEM or DER (PKCS#8 or PKCS#1)")
    };
    let k = rsa::pkcs1::RsaPrivateKey::from_der(&der)
        .map_err(|_| anyhow!("malformed PKCS#1 RSA private key"))?;
    if k.other_prime_infos.is_some() {
        bail!("multi-prime RSA keys are not supported");
    }
    Ok(der)
}

/// The PKCS#8 bytes inside an encrypted PKCS#8 key.
fn decrypt_pkcs8(bytes: &[u8], pass: &Passphrase) -> Result<der::SecretDocument> {
    pkcs8::EncryptedPrivateKeyInfo::from_der(bytes)
        .map_err(pkcs8::Error::from)
        .and_then(|k| k.decrypt(pass.expose().as_bytes()))
        .map_err(|_| {
            anyhow!(
                "cannot decrypt the encrypted PKCS#8 key (wrong passphrase or unsupported cipher)"
            )
        })
}

/// The PKCS#1 key inside a PKCS#8 `PrivateKeyInfo`, which must be RSA.
fn pkcs8_to_pkcs1(bytes: &[u8]) -> Result<Pkcs1Der> {
    let info = pkcs8::PrivateKeyInfo::try_from(bytes)
        .map_err(|_| anyhow!("malformed PKCS#8 private key, or not an RSA key"))?;
    if info.algorithm.oid != const_oid::db::rfc5912::RSA_ENCRYPTION {
        bail!("malformed PKCS#8 private key, or not an RSA key");
    }
    Ok(Zeroizing::new(info.private_key.to_vec()))
}

/// Load an X.509 certificate, PEM or DER.
pub fn load_certificate(path: &Path) -> Result<Certificate> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading certificate {}", path.display()))?;
    parse_certificate(&bytes).map_err(|e| anyhow!("certificate {}: {e}", path.display()))
}

fn parse_certificate(bytes: &[u8]) -> Result<Certificate> {
    use der::DecodePem;
    if is_pem(bytes) {
        let text =
            std::str::from_utf8(bytes).map_err(|_| anyhow!("PEM file is not valid UTF-8"))?;
        let b = pem_block(text, "CERTIFICATE")
            .ok_or_else(|| anyhow!("no CERTIFICATE block in PEM file"))?;
        return Certificate::from_pem(b).map_err(|e| anyhow!("malformed certificate: {e}"));
    }
    Certificate::from_der(bytes).map_err(|e| anyhow!("not a DER X.509 certificate: {e}"))
}

/// A module-signing key with its certificate; the key is checked to match
/// the certificate's public key when loaded.
pub struct ModuleKey {
    /// The key in libcrypto's form, which does the RSA private-key operation
    /// (about twice as fast as the `rsa` crate at 4096 bits) and checks each
    /// signature it makes.
    signer: crate::util::libcrypto::RsaKey,
    cert: Certificate,
}

impl fmt::Debug for ModuleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModuleKey")
            .field("signer", &self.signer_name())
            .finish_non_exhaustive()
    }
}

impl ModuleKey {
    /// Pair a key (PKCS#1 DER) and certificate, refusing a key that does
    /// not belong to it.
    pub fn new(key: &[u8], cert: Certificate) -> Result<Self> {
        let private = rsa::pkcs1::RsaPrivateKey::from_der(key)
            .map_err(|_| anyhow!("malformed PKCS#1 RSA private key"))?;
        let spki = &cert.tbs_certificate.subject_public_key_info;
        let public = (spki.algorithm.oid == const_oid::db::rfc5912::RSA_ENCRYPTION)
            .then(|| spki.subject_public_key.as_bytes())
            .flatten()
            .and_then(|bits| rsa::pkcs1::RsaPublicKey::from_der(bits).ok())
            .ok_or_else(|| anyhow!("the certificate does not hold an RSA key"))?;
        if public.modulus != private.modulus || public.public_exponent != private.public_exponent {
            bail!("the private key does not match the certificate's public key");
        }
        let signer = crate::util::libcrypto::RsaKey::from_pkcs1_der(key)?;
        Ok(ModuleKey { signer, cert })
    }

    /// Load from files (`key` and `cert` may be the same PEM file).
    pub fn load(key: &Path, cert: &Path, pass: Option<&Passphrase>) -> Result<Self> {
        let k = load_rsa_key(key, pass)?;
        let c = load_certificate(cert)?;
        Self::new(&k, c).with_context(|| format!("{} and {}", key.display(), cert.display()))
    }

    pub fn cert(&self) -> &Certificate {
        &self.cert
    }

    /// RSA PKCS#1 v1.5 signature over an already computed digest `D`
    /// (deterministic: the same key and digest always give the same bytes).
    pub fn sign_pkcs1v15<D: digest::Digest + const_oid::AssociatedOid>(
        &self,
        digest: &[u8],
    ) -> Result<Vec<u8>> {
        use crate::util::libcrypto::Digest;
        let kind = match D::OID {
            o if o == const_oid::db::rfc5912::ID_SHA_256 => Digest::Sha256,
            o if o == const_oid::db::rfc5912::ID_SHA_384 => Digest::Sha384,
            o if o == const_oid::db::rfc5912::ID_SHA_512 => Digest::Sha512,
            o => bail!("unsupported digest {o} for a module signature"),
        };
        self.signer.sign_digest(kind, digest)
    }

    /// The certificate subject's common name (what `modinfo` shows as
    /// `signer`), or the whole subject when it has none.
    pub fn signer_name(&self) -> String {
        common_name(&self.cert).unwrap_or_else(|| self.cert.tbs_certificate.subject.to_string())
    }

    /// The serial number as `modinfo` prints `sig_key`: `49:EC:6F:…`.
    pub fn serial_colon_hex(&self) -> String {
        colon_hex(self.cert.tbs_certificate.serial_number.as_bytes())
    }
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn common_name(cert: &Certificate) -> Option<String> {
    const CN: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == CN {
                if let Ok(s) = der::asn1::Utf8StringRef::try_from(&atv.value) {
                    return Some(s.as_str().to_string());
                }
                if let Ok(s) = der::asn1::PrintableStringRef::try_from(&atv.value) {
                    return Some(s.as_str().to_string());
                }
            }
        }
    }
    None
}

// ---- OpenPGP package key ---------------------------------------------------

/// The OpenPGP key that signs packages and repository metadata: khotfix's
/// one OpenPGP key type (publish's repository key is the same key, so a
/// second wrapper around another library's signer is not needed).
#[derive(Clone)]
pub struct PackageSigner {
    key: std::sync::Arc<pgp_rsa::PgpRsaKey>,
    /// Upper-case hex fingerprint.
    pub fingerprint: String,
    /// Key creation time (seconds since the epoch).
    pub created: u64,
    /// The armored public key (what clients import as `gpgkey=`).
    public: String,
}

impl fmt::Debug for PackageSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PackageSigner")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl PackageSigner {
    /// Load an armored OpenPGP secret key (RSA) and unlock it with `pass`
    /// when it is protected: a wrong or missing passphrase fails here, before
    /// anything is written.
    pub fn load(path: &Path, pass: Option<&Passphrase>) -> Result<Self> {
        let bytes = Zeroizing::new(
            std::fs::read(path)
                .with_context(|| format!("reading OpenPGP key {}", path.display()))?,
        );
        Self::from_armored(&bytes, pass).map_err(|e| anyhow!("OpenPGP key {}: {e}", path.display()))
    }

    /// [`PackageSigner::load`] (which unlocks the key; the name stays for
    /// the callers that must not write anything with a locked key). There
    /// is no trial signature any more: the unlock itself refuses a wrong
    /// passphrase, and libcrypto refusing an unlocked RSA key is left to
    /// the first real signature.
    pub fn load_unlocked(path: &Path, pass: Option<&Passphrase>) -> Result<Self> {
        Self::load(path, pass)
    }

    pub fn from_armored(bytes: &[u8], pass: Option<&Passphrase>) -> Result<Self> {
        use pgp::types::KeyDetails;
        let text = std::str::from_utf8(bytes).map_err(|_| anyhow!("not an ASCII-armored key"))?;
        let loaded = pgp_rsa::load(text, pass.map(Passphrase::expose))?;
        let primary = &loaded.cert.primary_key;
        let fingerprint = hex::encode_upper(primary.fingerprint().as_bytes());
        let created = u64::from(primary.created_at().as_secs());
        let public = loaded
            .cert
            .to_public_key()
            .to_armored_string(pgp::composed::ArmorOptions::default())
            .map_err(|e| anyhow!("exporting the public key failed: {e}"))?;
        Ok(PackageSigner {
            key: std::sync::Arc::new(loaded.key),
            fingerprint,
            created,
            public,
        })
    }

    /// A binary OpenPGP v4 signature packet over `data`, created at `t`
    /// (seconds since the epoch; fixed for reproducible output). A time
    /// before the key's creation is raised to it: gpg and rpm-sequoia reject
    /// signatures older than their key ("time conflict"), and the result is
    /// still a pure function of the inputs.
    pub fn sign_binary(&self, data: &[u8], t: u64) -> Result<Vec<u8>> {
        let t = t.max(self.key.created());
        let t = u32::try_from(t).context("signature time past 2106")?;
        self.key.sign_binary(data, t)
    }

    /// The armored public key (`RPM-GPG-KEY-khotfix`).
    pub fn public_armored(&self) -> &str {
        &self.public
    }

    /// An ASCII-armored detached signature (`repomd.xml.asc`).
    pub fn sign_detached_armored(&self, data: &[u8], t: u64) -> Result<String> {
        use pgp::composed::Deserializable;
        let raw = self.sign_binary(data, t)?;
        let sig = pgp::composed::DetachedSignature::from_bytes(&raw[..])
            .map_err(|e| anyhow!("re-reading signature: {e}"))?;
        sig.to_armored_string(None.into())
            .map_err(|e| anyhow!("armoring signature: {e}"))
    }
}

/// Check an armored detached signature over `data` against every key
/// (primary and subkeys) of an armored public key.
pub fn verify_detached(public_armored: &str, signature_armored: &str, data: &[u8]) -> Result<()> {
    use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
    let (public, _) = SignedPublicKey::from_string(public_armored)
        .map_err(|e| anyhow!("not an armored OpenPGP public key: {e}"))?;
    let (sig, _) = DetachedSignature::from_string(signature_armored)
        .map_err(|e| anyhow!("not an armored OpenPGP signature: {e}"))?;
    if sig.verify(&public.primary_key, data).is_ok() {
        return Ok(());
    }
    for sub in &public.public_subkeys {
        if sig.verify(&sub.key, data).is_ok() {
            return Ok(());
        }
    }
    Err(anyhow!("signature does not verify with the repository key"))
}

// ---- development key generation -------------------------------------------

/// Options for [`generate`].
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// RSA size for both keys (the kernel's default is 4096).
    pub bits: usize,
    /// Certificate subject CN.
    pub common_name: String,
    /// OpenPGP user id.
    pub user_id: String,
    /// Certificate lifetime.
    pub days: u32,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            bits: 4096,
            common_name: "khotfix module signing key".into(),
            user_id: "khotfix package signing <khotfix@localhost>".into(),
            days: 36500,
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratedKeys {
    pub dir: PathBuf,
    /// Module-signing private key (PKCS#8 PEM, mode 0600).
    pub module_key: PathBuf,
    /// Module-signing certificate, PEM.
    pub module_cert: PathBuf,
    /// The same certificate, DER (what `mokutil --import` takes).
    pub module_cert_der: PathBuf,
    /// OpenPGP secret key, armored (mode 0600).
    pub pgp_secret: PathBuf,
    /// OpenPGP public key, armored (`rpm --import`).
    pub pgp_public: PathBuf,
    pub pgp_fingerprint: String,
    pub cert_serial: String,
    /// Commands a host runs to trust these keys.
    pub enroll: Vec<String>,
}

/// File names inside the key directory.
pub const MODULE_KEY_FILE: &str = "module-signing.key.pem";
pub const MODULE_CERT_FILE: &str = "module-signing.crt.pem";
pub const MODULE_CERT_DER_FILE: &str = "module-signing.crt.der";
pub const PGP_SECRET_FILE: &str = "package-signing.secret.asc";
pub const PGP_PUBLIC_FILE: &str = "RPM-GPG-KEY-khotfix";

/// Generate development keys into `dir` (created 0700 if missing). Refuses
/// to overwrite existing key files.
pub fn generate(dir: &Path, opts: &GenerateOptions) -> Result<GeneratedKeys> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !(2048..=8192).contains(&opts.bits) {
        bail!("RSA key size {} is out of range (2048..=8192)", opts.bits);
    }
    crate::util::validate::message("certificate common name", &opts.common_name)
        .map_err(|e| anyhow!(e))?;
    crate::util::validate::message("OpenPGP user id", &opts.user_id).map_err(|e| anyhow!(e))?;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let names = [
        MODULE_KEY_FILE,
        MODULE_CERT_FILE,
        MODULE_CERT_DER_FILE,
        PGP_SECRET_FILE,
        PGP_PUBLIC_FILE,
    ];
    for n in names {
        if dir.join(n).exists() {
            bail!(
                "{} already exists; refusing to overwrite keys",
                dir.join(n).display()
            );
        }
    }
    let mut rng = rand::rngs::OsRng;
    let key =
        RsaPrivateKey::new(&mut rng, opts.bits).context("generating the module-signing RSA key")?;
    let cert = self_signed_module_cert(&key, &opts.common_name, opts.days)?;
    let cert_der = cert.to_der().context("encoding certificate")?;
    let cert_pem = der::pem::encode_string("CERTIFICATE", LineEnding::LF, &cert_der)
        .map_err(|e| anyhow!("encoding certificate PEM: {e}"))?;
    let key_pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding private key")?;

    let (pgp_secret, pgp_public, fingerprint) = generate_pgp(opts)?;

    let write_private = |name: &str, bytes: &[u8]| -> Result<PathBuf> {
        let p = dir.join(name);
        crate::util::fsx::write_atomic(&p, bytes)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("chmod 0600 {}", p.display()))?;
        Ok(p)
    };
    let write_public = |name: &str, bytes: &[u8]| -> Result<PathBuf> {
        let p = dir.join(name);
        crate::util::fsx::write_atomic(&p, bytes)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("chmod 0644 {}", p.display()))?;
        Ok(p)
    };
    // tempfile creates files 0600, so the private key is never readable by others.
    let module_key = write_private(MODULE_KEY_FILE, key_pem.as_bytes())?;
    let module_cert = write_public(MODULE_CERT_FILE, cert_pem.as_bytes())?;
    let module_cert_der = write_public(MODULE_CERT_DER_FILE, &cert_der)?;
    let pgp_secret_p = write_private(PGP_SECRET_FILE, pgp_secret.as_bytes())?;
    let pgp_public_p = write_public(PGP_PUBLIC_FILE, pgp_public.as_bytes())?;
    let q = |p: &Path| crate::util::validate::sh_quote(&p.display().to_string());
    Ok(GeneratedKeys {
        dir: dir.to_path_buf(),
        enroll: vec![
            format!(
                "mokutil --import {}   # then reboot and confirm in MokManager (Secure Boot hosts)",
                q(&module_cert_der)
            ),
            format!("rpm --import {}", q(&pgp_public_p)),
        ],
        module_key,
        module_cert,
        module_cert_der,
        pgp_secret: pgp_secret_p,
        pgp_public: pgp_public_p,
        pgp_fingerprint: fingerprint,
        cert_serial: colon_hex(cert.tbs_certificate.serial_number.as_bytes()),
    })
}

/// A certificate shaped like the kernel's `certs/x509.genkey`: self-signed,
/// `basicConstraints=critical,CA:FALSE`, `keyUsage=digitalSignature`,
/// `extendedKeyUsage=codeSigning`, subject and authority key identifiers.
fn self_signed_module_cert(key: &RsaPrivateKey, cn: &str, days: u32) -> Result<Certificate> {
    use std::str::FromStr;
    use x509_cert::builder::{Builder, CertificateBuilder, Profile};
    use x509_cert::ext::pkix::{
        AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
        SubjectKeyIdentifier,
    };
    use x509_cert::name::Name;
    use x509_cert::serial_number::SerialNumber;
    use x509_cert::spki::{EncodePublicKey, SubjectPublicKeyInfoOwned};
    use x509_cert::time::Validity;

    // RFC 4514 string: escape what would change its meaning.
    let escaped: String = cn
        .chars()
        .flat_map(|c| match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    let subject = Name::from_str(&format!("CN={escaped}"))
        .map_err(|e| anyhow!("certificate subject: {e}"))?;
    let pub_der = key
        .to_public_key()
        .to_public_key_der()
        .context("encoding public key")?;
    let spki =
        SubjectPublicKeyInfoOwned::from_der(pub_der.as_bytes()).context("decoding public key")?;
    let mut serial = [0u8; 20];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut serial);
    serial[0] &= 0x3f; // positive, and DER-minimal in 20 bytes
    serial[0] |= 0x01;
    let serial = SerialNumber::new(&serial).context("serial number")?;
    let validity = Validity::from_now(std::time::Duration::from_secs(u64::from(days) * 86400))
        .context("validity")?;
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone());
    let ski =
        SubjectKeyIdentifier::try_from(spki.owned_to_ref()).context("subject key identifier")?;
    let mut b = CertificateBuilder::new(
        Profile::Manual { issuer: None },
        serial,
        validity,
        subject,
        spki,
        &signer,
    )
    .context("certificate builder")?;
    b.add_extension(&BasicConstraints {
        ca: false,
        path_len_constraint: None,
    })
    .context("basicConstraints")?;
    b.add_extension(&KeyUsage(KeyUsages::DigitalSignature.into()))
        .context("keyUsage")?;
    b.add_extension(&ExtendedKeyUsage(vec![
        const_oid::db::rfc5280::ID_KP_CODE_SIGNING,
    ]))
    .context("extendedKeyUsage")?;
    b.add_extension(&ski).context("subjectKeyIdentifier")?;
    b.add_extension(&AuthorityKeyIdentifier {
        key_identifier: Some(ski.0.clone()),
        authority_cert_issuer: None,
        authority_cert_serial_number: None,
    })
    .context("authorityKeyIdentifier")?;
    b.build_with_rng::<rsa::pkcs1v15::Signature>(&mut rand::rngs::OsRng)
        .map_err(|e| anyhow!("signing certificate: {e}"))
}

/// An RSA OpenPGP key that can sign and certify, without a passphrase
/// (development keys; protect production keys with `gpg --passwd`).
/// Returns (armored secret key, armored public key, fingerprint).
fn generate_pgp(opts: &GenerateOptions) -> Result<(Zeroizing<String>, String, String)> {
    use pgp::composed::{KeyType, SecretKeyParamsBuilder};
    use pgp::crypto::hash::HashAlgorithm;
    use pgp::types::KeyDetails;
    let params = SecretKeyParamsBuilder::default()
        .key_type(KeyType::Rsa(opts.bits as u32))
        .can_certify(true)
        .can_sign(true)
        .primary_user_id(opts.user_id.clone())
        .preferred_hash_algorithms(vec![HashAlgorithm::Sha256, HashAlgorithm::Sha512].into())
        .build()
        .map_err(|e| anyhow!("OpenPGP key parameters: {e}"))?;
    let key = params
        .generate(rand::rngs::OsRng)
        .map_err(|e| anyhow!("generating the OpenPGP key: {e}"))?;
    let public = key.to_public_key();
    let secret_armored = Zeroizing::new(
        key.to_armored_string(None.into())
            .map_err(|e| anyhow!("armoring secret key: {e}"))?,
    );
    let public_armored = public
        .to_armored_string(None.into())
        .map_err(|e| anyhow!("armoring public key: {e}"))?;
    Ok((
        secret_armored,
        public_armored,
        hex::encode_upper(key.fingerprint().as_bytes()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_block_finds_the_right_block() {
        let t = "x\n-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nBBB\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            pem_block(t, "PRIVATE KEY").unwrap(),
            "-----BEGIN PRIVATE KEY-----\nBBB\n-----END PRIVATE KEY-----"
        );
        assert!(pem_block(t, "RSA PRIVATE KEY").is_none());
    }

    #[test]
    fn garbage_keys_give_clean_errors() {
        let e = parse_rsa_key(
            b"-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----\n",
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("malformed PKCS#8"), "{e}");
        let e = parse_rsa_key(b"\x30\x03\x02\x01\x00", None).unwrap_err();
        assert!(e.to_string().contains("not an RSA private key"), "{e}");
        assert!(!format!("{:?}", Passphrase::new("hunter2".into())).contains("hunter2"));
    }
}
