//! The repository signing key: load an armored OpenPGP secret key, sign
//! repomd.xml (detached, armored), export the public key, verify signatures.
//!
//! The passphrase never travels through argv: it comes from the
//! `KHOTFIX_GPG_PASSPHRASE` environment variable or a file, and no error
//! message includes it.

use anyhow::{anyhow, Context, Result};
use pgp::composed::{
    ArmorOptions, Deserializable, DetachedSignature, SignedPublicKey, SignedSecretKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::types::{KeyDetails, Password};
use std::path::Path;

/// A loaded signing key with its passphrase.
pub struct RepoKey {
    key: SignedSecretKey,
    password: Password,
}

impl std::fmt::Debug for RepoKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RepoKey({})", self.fingerprint())
    }
}

impl RepoKey {
    /// Load an armored secret key. `passphrase` may be empty for an
    /// unprotected key. The key is unlocked once here so a wrong passphrase
    /// fails before anything in the repository changes.
    pub fn load(path: &Path, passphrase: Option<&str>) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the signing key", path.display()))?;
        let (key, _) = SignedSecretKey::from_string(&text)
            .map_err(|e| anyhow!("{}: not an armored OpenPGP secret key: {e}", path.display()))?;
        let password = match passphrase {
            Some(p) => Password::from(p),
            None => Password::empty(),
        };
        let k = RepoKey { key, password };
        k.sign(b"khotfix key check").map_err(|e| {
            anyhow!(
                "{}: cannot sign with this key (wrong or missing passphrase?): {e:#}",
                path.display()
            )
        })?;
        Ok(k)
    }

    /// Uppercase hex fingerprint of the primary key.
    pub fn fingerprint(&self) -> String {
        hex::encode_upper(self.key.primary_key.fingerprint().as_bytes())
    }

    /// Detached, armored signature over `data`.
    pub fn sign(&self, data: &[u8]) -> Result<String> {
        let sig = DetachedSignature::sign_binary_data(
            rand::thread_rng(),
            &self.key.primary_key,
            &self.password,
            HashAlgorithm::Sha256,
            data,
        )
        .map_err(|e| anyhow!("signing failed: {e}"))?;
        sig.to_armored_string(ArmorOptions::default())
            .map_err(|e| anyhow!("armoring the signature failed: {e}"))
    }

    /// The same key as a package signer, for the `khotfix-release` RPM
    /// (signed like every hotfix: header-only and header+payload).
    pub fn package_signer(&self) -> Result<crate::keys::PackageSigner> {
        let armored = self
            .key
            .to_armored_string(ArmorOptions::default())
            .map_err(|e| anyhow!("exporting the signing key failed: {e}"))?;
        let pass = self.password.read();
        let pass = match std::str::from_utf8(&pass) {
            Ok("") => None,
            Ok(p) => Some(crate::keys::Passphrase::new(p.to_string())),
            Err(_) => return Err(anyhow!("the signing key's passphrase is not UTF-8")),
        };
        crate::keys::PackageSigner::from_armored(armored.as_bytes(), pass.as_ref())
            .context("the repository key cannot sign packages")
    }

    /// The armored public key (what clients import as `gpgkey=`).
    pub fn public_armored(&self) -> Result<String> {
        let public: SignedPublicKey = self.key.to_public_key();
        public
            .to_armored_string(ArmorOptions::default())
            .map_err(|e| anyhow!("exporting the public key failed: {e}"))
    }
}

/// Check an armored detached signature over `data` against every key
/// (primary and subkeys) of an armored public key.
pub fn verify_detached(public_armored: &str, signature_armored: &str, data: &[u8]) -> Result<()> {
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
