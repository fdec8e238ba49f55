//! Stage: sign. Appends a kernel module signature in the kernel's own format,
//! byte-identical to `scripts/sign-file`:
//!
//! ```text
//! module ‖ PKCS#7 SignedData (DER) ‖ struct module_signature ‖ "~Module signature appended~\n"
//! ```
//!
//! `struct module_signature` is 12 bytes: algo 0, hash 0, id_type 2 (PKCS#7),
//! signer_len 0, key_id_len 0, 3 bytes of padding and the PKCS#7 length as a
//! big-endian u32.
//!
//! The SignedData is what OpenSSL's CMS code writes for sign-file's flags
//! (`CMS_NOCERTS | CMS_PARTIAL | CMS_BINARY | CMS_DETACHED | CMS_STREAM`, then
//! `CMS_add1_signer(.., CMS_NOCERTS | CMS_BINARY | CMS_NOSMIMECAP | CMS_NOATTR)`):
//! version 1, one digest algorithm (without NULL parameters), detached
//! `id-data` content, no certificates, and one SignerInfo identified by the
//! certificate's issuer and serial number, with no signed attributes, so the
//! RSA PKCS#1 v1.5 signature covers the digest of the module bytes directly
//! (the kernel rejects signed attributes it does not expect). RSA PKCS#1 v1.5
//! is deterministic, so the same key, certificate and module give the same
//! bytes as sign-file; `tests/sign_file_compat.rs` checks exactly that.

use crate::keys::ModuleKey;
use crate::util::libcrypto;
use anyhow::{bail, Context, Result};
use cms::cert::IssuerAndSerialNumber;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{ObjectIdentifier, OctetString, SetOfVec};
use der::{Any, Encode};
use serde::Serialize;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use x509_cert::spki::AlgorithmIdentifierOwned;

/// The marker the kernel looks for at the very end of a signed module.
pub const MODULE_SIG_MAGIC: &[u8] = b"~Module signature appended~\n";
/// Size of `struct module_signature`.
const MODULE_SIG_INFO_LEN: usize = 12;
/// `PKEY_ID_PKCS7` in the kernel's `struct module_signature`.
const PKEY_ID_PKCS7: u8 = 2;

const OID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const OID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Digest used for a module signature. The kernel verifies all three with
/// RSA; SHA-1 and SHA-224 are deliberately not offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HashAlgo {
    #[default]
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlgo {
    /// The name sign-file and `modinfo` use (`sha256`).
    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Sha384 => "sha384",
            HashAlgo::Sha512 => "sha512",
        }
    }

    fn libcrypto(self) -> libcrypto::Digest {
        match self {
            HashAlgo::Sha256 => libcrypto::Digest::Sha256,
            HashAlgo::Sha384 => libcrypto::Digest::Sha384,
            HashAlgo::Sha512 => libcrypto::Digest::Sha512,
        }
    }

    fn oid(self) -> ObjectIdentifier {
        match self {
            HashAlgo::Sha256 => ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1"),
            HashAlgo::Sha384 => ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2"),
            HashAlgo::Sha512 => ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3"),
        }
    }
}

impl fmt::Display for HashAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlgo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "sha256" => Ok(HashAlgo::Sha256),
            "sha384" => Ok(HashAlgo::Sha384),
            "sha512" => Ok(HashAlgo::Sha512),
            other => Err(format!(
                "unsupported module signature hash {other:?} (use sha256, sha384 or sha512)"
            )),
        }
    }
}

/// What an existing trailer says, as far as we need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExistingSignature {
    /// Length of the module without any signature.
    pub content_len: usize,
    /// Length of the PKCS#7 blob.
    pub sig_len: usize,
}

/// Find an appended signature. `Ok(None)` when the module is unsigned; an
/// error when the trailer is there but malformed (truncated, wrong id type).
pub fn find_signature(module: &[u8]) -> Result<Option<ExistingSignature>> {
    if !module.ends_with(MODULE_SIG_MAGIC) {
        return Ok(None);
    }
    let end = module.len() - MODULE_SIG_MAGIC.len();
    if end < MODULE_SIG_INFO_LEN {
        bail!("module signature trailer is truncated");
    }
    let info = &module[end - MODULE_SIG_INFO_LEN..end];
    let id_type = info[2];
    let sig_len = u32::from_be_bytes([info[8], info[9], info[10], info[11]]) as usize;
    if id_type != PKEY_ID_PKCS7 {
        bail!("module signature has id_type {id_type}, expected {PKEY_ID_PKCS7} (PKCS#7)");
    }
    let before_info = end - MODULE_SIG_INFO_LEN;
    if sig_len == 0 || sig_len > before_info {
        bail!("module signature length {sig_len} does not fit in the file");
    }
    Ok(Some(ExistingSignature {
        content_len: before_info - sig_len,
        sig_len,
    }))
}

/// The module without its appended signature (repeatedly: a module that was
/// signed twice by tools that append rather than replace loses both).
pub fn strip_signature(module: &[u8]) -> Result<&[u8]> {
    let mut m = module;
    while let Some(s) = find_signature(m)? {
        m = &m[..s.content_len];
    }
    Ok(m)
}

/// The detached PKCS#7 SignedData over `content`, DER-encoded, exactly as
/// sign-file writes it.
pub fn pkcs7_signature(content: &[u8], key: &ModuleKey, hash: HashAlgo) -> Result<Vec<u8>> {
    let digest = libcrypto::digest(hash.libcrypto(), content)?;
    pkcs7_signature_of_digest(&digest, key, hash)
}

/// [`pkcs7_signature`] from the content's `hash` digest.
fn pkcs7_signature_of_digest(digest: &[u8], key: &ModuleKey, hash: HashAlgo) -> Result<Vec<u8>> {
    let signature = match hash {
        HashAlgo::Sha256 => key.sign_pkcs1v15::<sha2::Sha256>(digest)?,
        HashAlgo::Sha384 => key.sign_pkcs1v15::<sha2::Sha384>(digest)?,
        HashAlgo::Sha512 => key.sign_pkcs1v15::<sha2::Sha512>(digest)?,
    };
    // OpenSSL writes digest algorithms without parameters, the RSA
    // signature algorithm with an explicit NULL.
    let digest_alg = AlgorithmIdentifierOwned {
        oid: hash.oid(),
        parameters: None,
    };
    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: key.cert().tbs_certificate.issuer.clone(),
            serial_number: key.cert().tbs_certificate.serial_number.clone(),
        }),
        digest_alg: digest_alg.clone(),
        signed_attrs: None,
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: OID_RSA_ENCRYPTION,
            parameters: Some(Any::null()),
        },
        signature: OctetString::new(signature).context("encoding the signature")?,
        unsigned_attrs: None,
    };
    let signed_data = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![digest_alg])
            .context("encoding digest algorithms")?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: OID_DATA,
            econtent: None,
        },
        certificates: None,
        crls: None,
        signer_infos: SignerInfos(
            SetOfVec::try_from(vec![signer_info]).context("encoding signer infos")?,
        ),
    };
    let ci = ContentInfo {
        content_type: OID_SIGNED_DATA,
        content: Any::encode_from(&signed_data).context("encoding SignedData")?,
    };
    ci.to_der().context("encoding ContentInfo")
}

/// Sign a module image: any existing signature is removed first, so signing
/// a signed module gives the same bytes as signing the unsigned one once.
pub fn sign_module(module: &[u8], key: &ModuleKey, hash: HashAlgo) -> Result<Vec<u8>> {
    let hashed = hash_content(module, hash)?;
    let (tail, _) = hashed.finish(key, hash)?;
    Ok([&module[..hashed.content_len], &tail].concat())
}

/// A module's content (without any old signature), hashed: all of signing
/// that needs no key.
struct Hashed {
    content_len: usize,
    /// sha256 over the content so far (the report's whole-file sha256
    /// goes on over the new signature).
    whole: libcrypto::Hasher,
    /// The content's digest in the signature's hash.
    digest: Vec<u8>,
}

fn hash_content(module: &[u8], hash: HashAlgo) -> Result<Hashed> {
    if !module.starts_with(b"\x7fELF") {
        bail!("not an ELF kernel module (no ELF magic)");
    }
    let content = strip_signature(module)?;
    let mut whole = libcrypto::Hasher::new(libcrypto::Digest::Sha256)?;
    whole.update(content)?;
    // For sha256 signatures the content is hashed once for both.
    let digest = match hash {
        HashAlgo::Sha256 => whole.try_clone()?.finish()?,
        _ => libcrypto::digest(hash.libcrypto(), content)?,
    };
    Ok(Hashed {
        content_len: content.len(),
        whole,
        digest,
    })
}

impl Hashed {
    /// The signature trailer (`PKCS#7 ‖ struct module_signature ‖ magic`)
    /// and the sha256 of the signed module.
    fn finish(&self, key: &ModuleKey, hash: HashAlgo) -> Result<(Vec<u8>, String)> {
        let sig = pkcs7_signature_of_digest(&self.digest, key, hash)?;
        let sig_len = u32::try_from(sig.len()).context("signature too large")?;
        let mut tail = Vec::with_capacity(sig.len() + MODULE_SIG_INFO_LEN + MODULE_SIG_MAGIC.len());
        tail.extend_from_slice(&sig);
        // struct module_signature { algo, hash, id_type, signer_len, key_id_len, __pad[3], sig_len }
        tail.extend_from_slice(&[0, 0, PKEY_ID_PKCS7, 0, 0, 0, 0, 0]);
        tail.extend_from_slice(&sig_len.to_be_bytes());
        tail.extend_from_slice(MODULE_SIG_MAGIC);
        let mut whole = self.whole.try_clone()?;
        whole.update(&tail)?;
        Ok((tail, hex::encode(whole.finish()?)))
    }
}

/// The module's bytes, mapped rather than read: a 2 MB module read into a
/// fresh buffer costs 500 page faults and a copy, a third of the time
/// sign-file takes for the whole job. The file is replaced by rename, never
/// written in place, so signing a module in place keeps the mapping valid.
/// What is not a regular file (a pipe, `/dev/stdin`) or cannot be mapped is
/// read.
fn read_module(input: &Path) -> Result<Module> {
    let f = std::fs::File::open(input).with_context(|| format!("reading {}", input.display()))?;
    let regular = f.metadata().map(|m| m.is_file()).unwrap_or(false);
    if regular {
        // SAFETY: the mapping is only read. Another process truncating the
        // module while we sign it would end this process with SIGBUS rather
        // than an error line; signing a file that is being rewritten gives
        // a wrong result either way.
        if let Ok(m) = unsafe { memmap2::MmapOptions::new().populate().map(&f) } {
            return Ok(Module::Mapped(m));
        }
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut &f, &mut bytes)
        .with_context(|| format!("reading {}", input.display()))?;
    Ok(Module::Read(bytes))
}

/// A module's bytes, mapped or read.
enum Module {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl std::ops::Deref for Module {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Module::Mapped(m) => m,
            Module::Read(v) => v,
        }
    }
}

/// What [`sign_file`] did, for `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct SignReport {
    pub input: std::path::PathBuf,
    pub output: std::path::PathBuf,
    pub hash: HashAlgo,
    /// The certificate's subject (what `modinfo` shows as `signer`).
    pub signer: String,
    /// The certificate's serial number as `modinfo` prints `sig_key`.
    pub sig_key: String,
    /// True when an existing signature was replaced.
    pub replaced: bool,
    pub sha256: String,
}

/// Sign `input` and write the result to `output` atomically (they may be the
/// same path). Nothing is written when signing fails.
pub fn sign_file(
    input: &Path,
    output: &Path,
    key: &ModuleKey,
    hash: HashAlgo,
) -> Result<SignReport> {
    prepare(input, hash)?.sign_into(output, key)
}

/// A module file read and hashed, ready for a key: everything of
/// [`sign_file`] that needs no key. (Hashing the first module while the key
/// loads was tried: no gain beyond run-to-run noise.)
struct Prepared {
    input: std::path::PathBuf,
    module: Module,
    hash: HashAlgo,
    replaced: bool,
    hashed: Hashed,
}

/// Read and hash `input` for a `hash` signature.
fn prepare(input: &Path, hash: HashAlgo) -> Result<Prepared> {
    let module = read_module(input)?;
    let replaced = find_signature(&module)
        .with_context(|| format!("{}", input.display()))?
        .is_some();
    let hashed =
        hash_content(&module, hash).with_context(|| format!("signing {}", input.display()))?;
    Ok(Prepared {
        input: input.to_path_buf(),
        module,
        hash,
        replaced,
        hashed,
    })
}

impl Prepared {
    /// Sign with `key` and write the result to `output` atomically.
    fn sign_into(self, output: &Path, key: &ModuleKey) -> Result<SignReport> {
        let (tail, sha256) = self
            .hashed
            .finish(key, self.hash)
            .with_context(|| format!("signing {}", self.input.display()))?;
        let content = &self.module[..self.hashed.content_len];
        // No fsync, like sign-file: signing again reproduces the same bytes.
        crate::util::fsx::write_replacing(output, &[content, &tail])?;
        Ok(SignReport {
            input: self.input.clone(),
            output: output.to_path_buf(),
            hash: self.hash,
            signer: key.signer_name(),
            sig_key: key.serial_colon_hex(),
            replaced: self.replaced,
            sha256,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_names_parse() {
        assert_eq!("SHA512".parse::<HashAlgo>().unwrap(), HashAlgo::Sha512);
        assert!("sha1".parse::<HashAlgo>().is_err());
    }

    #[test]
    fn trailer_parsing() {
        assert_eq!(find_signature(b"\x7fELFabc").unwrap(), None);
        let mut m = b"\x7fELF-body".to_vec();
        m.extend_from_slice(b"SIG");
        m.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
        m.extend_from_slice(MODULE_SIG_MAGIC);
        assert_eq!(strip_signature(&m).unwrap(), b"\x7fELF-body");
        // A trailer claiming more bytes than the file has is refused.
        let mut bad = b"x".to_vec();
        bad.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        bad.extend_from_slice(MODULE_SIG_MAGIC);
        assert!(find_signature(&bad).is_err());
        let mut wrong = b"xxxx".to_vec();
        wrong.extend_from_slice(&[0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        wrong.extend_from_slice(MODULE_SIG_MAGIC);
        assert!(find_signature(&wrong)
            .unwrap_err()
            .to_string()
            .contains("id_type 1"));
    }
}
