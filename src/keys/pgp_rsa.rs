//! The OpenPGP signing key with its RSA secret in libcrypto.
//!
//! Why: the `pgp` crate signs with the pure-Rust `rsa` crate, about 5 ms per
//! RSA-3072 signature here, and decrypts a protected key again for every
//! signature. A publish that signs one package makes four (the passphrase
//! check, the header, header+payload, `repomd.xml.asc`): a sixth of adding
//! a package to a 10,000-package repository (issue 17). Here the key is
//! unlocked once, when it is loaded (a wrong passphrase fails right there),
//! and libcrypto makes each signature; the `pgp` crate still builds and
//! serialises the signature packets, so the bytes are the ones it made
//! before (RSA PKCS#1 v1.5 is deterministic).
//!
//! Which key signs follows the `rpm` crate's `Signer::from_asc`, which did
//! this before: the first certificate whose bindings verify, its first
//! subkey flagged for signing, else its primary key; signatures carry the
//! creation time, issuer fingerprint, issuer key id and the certificate's
//! first user id.

use crate::util::libcrypto;
use anyhow::{anyhow, bail, Result};
use pgp::composed::{Deserializable, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::packet::PacketTrait;
use pgp::packet::{SignatureConfig, SignatureType, Subpacket, SubpacketData};
use pgp::types::{
    KeyDetails, KeyVersion, Mpi, Password, PlainSecretParams, PublicParams, SignatureBytes,
    SigningKey,
};

/// The public half of the key that signs.
#[derive(Debug, Clone)]
enum Details {
    Primary(pgp::packet::PublicKey),
    Sub(pgp::packet::PublicSubkey),
}

macro_rules! delegate {
    ($self:expr, $method:ident) => {
        match &$self.details {
            Details::Primary(k) => k.$method(),
            Details::Sub(k) => k.$method(),
        }
    };
}

/// An unlocked RSA OpenPGP signing key.
pub struct PgpRsaKey {
    details: Details,
    rsa: libcrypto::RsaKey,
    user_id: Option<Vec<u8>>,
}

impl std::fmt::Debug for PgpRsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgpRsaKey").finish_non_exhaustive()
    }
}

/// The parsed armored key: the certificate (for fingerprint and public key)
/// and the unlocked signing key.
pub struct Loaded {
    pub cert: SignedSecretKey,
    pub key: PgpRsaKey,
}

/// Parse an armored secret key (or keyring), pick the signing key and unlock
/// it with `pass`. Errors name no key material.
pub fn load(text: &str, pass: Option<&str>) -> Result<Loaded> {
    let (keys, _) = SignedSecretKey::from_string_many(text)
        .map_err(|_| anyhow!("not an armored OpenPGP secret key"))?;
    let mut certs = keys.filter_map(|k| k.ok()).peekable();
    if certs.peek().is_none() {
        bail!("not an armored OpenPGP secret key");
    }
    let cert = certs
        .find(|c| c.verify_bindings().is_ok())
        .ok_or_else(|| anyhow!("the OpenPGP key's self-signatures do not verify"))?;
    if cert.primary_key.algorithm() != PublicKeyAlgorithm::RSA {
        bail!(
            "the OpenPGP key is {:?}; khotfix signs packages with RSA keys (EL7's rpm needs them)",
            cert.primary_key.algorithm()
        );
    }
    let user_id = cert.details.users.first().map(|u| u.id.id().to_vec());
    let pw = Password::from(pass.unwrap_or(""));
    let subkey = cert
        .secret_subkeys
        .iter()
        .find(|sk| sk.signatures.iter().any(|sig| sig.key_flags().sign()));
    let (details, encrypted, unlocked) = match subkey {
        Some(sk) => (
            Details::Sub(sk.key.public_key().clone()),
            sk.key.secret_params().is_encrypted(),
            sk.key.unlock(&pw, pkcs1_der),
        ),
        None => (
            Details::Primary(cert.primary_key.public_key().clone()),
            cert.primary_key.secret_params().is_encrypted(),
            cert.primary_key.unlock(&pw, pkcs1_der),
        ),
    };
    let der = unlocked
        .map_err(|_| match (encrypted, pass) {
            (true, None) => anyhow!(
                "the OpenPGP key is protected by a passphrase; set KHOTFIX_SIGN_PASSPHRASE or pass --passphrase-file"
            ),
            _ => anyhow!(
                "cannot unlock the OpenPGP key: the passphrase does not match, or the key's protection is not supported"
            ),
        })?
        .map_err(|e| anyhow!("unusable OpenPGP signing key: {e}"))?;
    let key = PgpRsaKey {
        details,
        rsa: libcrypto::RsaKey::from_pkcs1_der(&der)?,
        user_id,
    };
    if key.version() != KeyVersion::V4 || key.algorithm() != PublicKeyAlgorithm::RSA {
        bail!("the OpenPGP signing key must be a version 4 RSA key (EL7's rpm reads no other)");
    }
    Ok(Loaded { cert, key })
}

/// The unlocked RSA secret as PKCS#1 DER, for libcrypto.
fn pkcs1_der(
    public: &PublicParams,
    secret: &PlainSecretParams,
) -> pgp::errors::Result<zeroize::Zeroizing<Vec<u8>>> {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    let (PublicParams::RSA(public), PlainSecretParams::RSA(secret)) = (public, secret) else {
        return Err("not an RSA key".to_string().into());
    };
    let (d, p, q, u) = secret.to_bytes();
    let (d, p, q, _u) = (
        zeroize::Zeroizing::new(d),
        zeroize::Zeroizing::new(p),
        zeroize::Zeroizing::new(q),
        zeroize::Zeroizing::new(u),
    );
    let key = rsa::RsaPrivateKey::from_components(
        public.key.n().clone(),
        public.key.e().clone(),
        rsa::BigUint::from_bytes_be(&d),
        vec![
            rsa::BigUint::from_bytes_be(&p),
            rsa::BigUint::from_bytes_be(&q),
        ],
    )
    .map_err(|_| "inconsistent RSA key".to_string())?;
    let der = key
        .to_pkcs1_der()
        .map_err(|_| "cannot encode the RSA key".to_string())?;
    Ok(zeroize::Zeroizing::new(der.as_bytes().to_vec()))
}

impl PgpRsaKey {
    /// When the signing (sub)key was created (seconds since the epoch).
    pub fn created(&self) -> u64 {
        u64::from(self.created_at().as_secs())
    }

    /// A binary OpenPGP v4 signature packet (with its header) over `data`,
    /// created at `t` (seconds since the epoch).
    pub fn sign_binary(&self, data: &[u8], t: u32) -> Result<Vec<u8>> {
        let mut cfg = SignatureConfig::v4(
            SignatureType::Binary,
            PublicKeyAlgorithm::RSA,
            HashAlgorithm::Sha256,
        );
        let sub = |d| Subpacket::regular(d).map_err(|e| anyhow!("OpenPGP signing failed: {e}"));
        cfg.hashed_subpackets = vec![
            sub(SubpacketData::SignatureCreationTime(
                pgp::types::Timestamp::from_secs(t),
            ))?,
            sub(SubpacketData::IssuerFingerprint(self.fingerprint()))?,
            sub(SubpacketData::IssuerKeyId(self.legacy_key_id()))?,
        ];
        if let Some(uid) = &self.user_id {
            cfg.hashed_subpackets
                .push(sub(SubpacketData::SignersUserID(uid.clone().into()))?);
        }
        let sig = cfg
            .sign(self, &Password::from(""), data)
            .map_err(|e| anyhow!("OpenPGP signing failed: {e}"))?;
        let mut out = Vec::with_capacity(1024);
        sig.to_writer_with_header(&mut out)
            .map_err(|e| anyhow!("OpenPGP signing failed: {e}"))?;
        Ok(out)
    }
}

impl KeyDetails for PgpRsaKey {
    fn version(&self) -> KeyVersion {
        delegate!(self, version)
    }
    fn legacy_key_id(&self) -> pgp::types::KeyId {
        delegate!(self, legacy_key_id)
    }
    fn fingerprint(&self) -> pgp::types::Fingerprint {
        delegate!(self, fingerprint)
    }
    fn algorithm(&self) -> PublicKeyAlgorithm {
        delegate!(self, algorithm)
    }
    fn created_at(&self) -> pgp::types::Timestamp {
        delegate!(self, created_at)
    }
    fn legacy_v3_expiration_days(&self) -> Option<u16> {
        delegate!(self, legacy_v3_expiration_days)
    }
    fn public_params(&self) -> &PublicParams {
        delegate!(self, public_params)
    }
}

impl SigningKey for PgpRsaKey {
    fn sign(
        &self,
        _unlocked: &Password,
        hash: HashAlgorithm,
        digest: &[u8],
    ) -> pgp::errors::Result<SignatureBytes> {
        let kind = match hash {
            HashAlgorithm::Sha256 => libcrypto::Digest::Sha256,
            HashAlgorithm::Sha384 => libcrypto::Digest::Sha384,
            HashAlgorithm::Sha512 => libcrypto::Digest::Sha512,
            other => return Err(format!("unsupported hash {other:?}").into()),
        };
        let sig = self
            .rsa
            .sign_digest(kind, digest)
            .map_err(|e| format!("{e:#}"))?;
        Ok(SignatureBytes::Mpis(vec![Mpi::from_slice(&sig)]))
    }

    fn hash_alg(&self) -> HashAlgorithm {
        HashAlgorithm::Sha256
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same bytes as the `rpm` crate's pgp signer made, which khotfix
    /// used before; a wrong passphrase fails at load, naming no secret.
    #[test]
    fn same_signatures_as_the_rpm_crate_signer() {
        use rpm::signature::Signing;
        let opts = super::super::GenerateOptions {
            bits: 2048,
            ..Default::default()
        };
        let (secret, _, _) = super::super::generate_pgp(&opts).unwrap();
        let ours = load(&secret, None).unwrap().key;
        let theirs = rpm::signature::pgp::Signer::from_asc(&secret).unwrap();
        for data in [&b""[..], b"header", &[7u8; 100_000][..]] {
            let t = 1_754_322_514;
            assert_eq!(
                ours.sign_binary(data, t).unwrap(),
                theirs.sign(data, rpm::Timestamp(t)).unwrap()
            );
        }
        assert!(load("not a key", None).is_err());
    }
}
