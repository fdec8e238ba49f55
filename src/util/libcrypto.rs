//! RSA PKCS#1 v1.5 signatures and digests by the system libcrypto, called
//! directly.
//!
//! Why libcrypto: it is what the kernel's `sign-file` signs with; its RSA is
//! about twice as fast as the pure-Rust `rsa` crate at 4096 bits, and its
//! SHA-256 hashes a 2 MB module in 1.0 ms where the `sha2` crate takes 1.6.
//!
//! Why not through the `openssl` crate: its first call runs
//! `OPENSSL_init_ssl`, which loads libssl and fetches every TLS cipher and
//! digest from the providers, about 2.4 million instructions (0.6 ms) that
//! a process signing one module never needs: more than the whole difference
//! between `khotfix sign` and sign-file, which links libcrypto alone
//! (issue 17). khotfix needs two things from libcrypto, loading an RSA key
//! from DER and one signature over a digest, so it calls those few
//! functions here, behind one safe type; libcrypto initialises itself on
//! first use.

use anyhow::{anyhow, bail, Result};
use openssl_sys as ffi;
use std::ffi::{c_int, c_long};

extern "C" {
    // libcrypto's own initialisation (openssl-sys declares only libssl's).
    fn OPENSSL_init_crypto(opts: u64, settings: *const ffi::OPENSSL_INIT_SETTINGS) -> c_int;
}

/// Initialise libcrypto once, without its exit handler: freeing every table
/// at exit cost 1.2 million instructions (0.3 ms) per `khotfix sign`, for
/// memory the kernel takes back anyway (the openssl crate does the same).
fn init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    // SAFETY: called once, before any other libcrypto call of ours.
    INIT.call_once(|| unsafe {
        OPENSSL_init_crypto(ffi::OPENSSL_INIT_NO_ATEXIT, std::ptr::null());
    });
}

/// The digests a signature can name (the DigestInfo libcrypto prefixes) and
/// [`Hasher`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    Sha256,
    Sha384,
    Sha512,
}

impl Digest {
    /// The digest's method table, fetched once. OpenSSL 3 looks the legacy
    /// `EVP_sha256()` table up in its provider store again on every
    /// `EVP_DigestInit_ex` (a lock and a search: a quarter of the time of
    /// hashing an 8 KB package). `EVP_MD_fetch` is found at run time, so
    /// OpenSSL 1.1, which has neither the function nor the cost, still
    /// links and uses the static table.
    fn md(self) -> *const ffi::EVP_MD {
        static FETCHED: [std::sync::OnceLock<usize>; 3] = [const { std::sync::OnceLock::new() }; 3];
        let (slot, name, legacy) = match self {
            // SAFETY (the `legacy` functions): they return static tables.
            Digest::Sha256 => (0, c"SHA256", unsafe { ffi::EVP_sha256() }),
            Digest::Sha384 => (1, c"SHA384", unsafe { ffi::EVP_sha384() }),
            Digest::Sha512 => (2, c"SHA512", unsafe { ffi::EVP_sha512() }),
        };
        let fetched = *FETCHED[slot].get_or_init(|| fetch(name) as usize);
        if fetched == 0 {
            legacy
        } else {
            fetched as *const ffi::EVP_MD
        }
    }

    /// Length of the digest in bytes.
    pub fn size(self) -> usize {
        match self {
            Digest::Sha256 => 32,
            Digest::Sha384 => 48,
            Digest::Sha512 => 64,
        }
    }
}

/// `EVP_MD_fetch(NULL, name, NULL)` when this libcrypto has it (OpenSSL 3),
/// else null. The table is kept for the life of the process.
fn fetch(name: &std::ffi::CStr) -> *const ffi::EVP_MD {
    type Fetch = unsafe extern "C" fn(
        *mut std::ffi::c_void,
        *const std::ffi::c_char,
        *const std::ffi::c_char,
    ) -> *mut ffi::EVP_MD;
    init();
    // SAFETY: dlsym with a NUL-terminated name; a non-null result is
    // libcrypto's EVP_MD_fetch, whose C signature `Fetch` spells out.
    unsafe {
        let sym = libc::dlsym(libc::RTLD_DEFAULT, c"EVP_MD_fetch".as_ptr());
        if sym.is_null() {
            return std::ptr::null();
        }
        let fetch: Fetch = std::mem::transmute::<*mut std::ffi::c_void, Fetch>(sym);
        let md = fetch(std::ptr::null_mut(), name.as_ptr(), std::ptr::null());
        if md.is_null() {
            clear_errors();
        }
        md
    }
}

/// An RSA private key held by libcrypto.
pub struct RsaKey {
    pkey: *mut ffi::EVP_PKEY,
}

// SAFETY: an EVP_PKEY is reference counted and, once loaded, only read by
// signing (OpenSSL documents keys as shareable between threads).
unsafe impl Send for RsaKey {}
unsafe impl Sync for RsaKey {}

impl RsaKey {
    /// Load a PKCS#1 `RSAPrivateKey` (DER). The error says nothing about
    /// the bytes.
    ///
    /// Through `d2i_RSAPrivateKey`, not `d2i_AutoPrivateKey`: OpenSSL 3's
    /// generic decoders cost 8 million instructions (2 ms) to set up, four
    /// times the whole signature at 2048 bits.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<RsaKey> {
        init();
        let len = c_long::try_from(der.len()).map_err(|_| anyhow!("RSA key too large"))?;
        let mut p = der.as_ptr();
        // SAFETY: p points at len readable bytes; a null first argument
        // makes libcrypto allocate the RSA object. EVP_PKEY_assign_RSA
        // hands its reference to the EVP_PKEY, which we own from here on.
        unsafe {
            let rsa = ffi::d2i_RSAPrivateKey(std::ptr::null_mut(), &mut p, len);
            if rsa.is_null() {
                clear_errors();
                bail!("libcrypto cannot load the RSA key");
            }
            let pkey = ffi::EVP_PKEY_new();
            if pkey.is_null() {
                ffi::RSA_free(rsa);
                clear_errors();
                bail!("libcrypto cannot allocate a key");
            }
            let key = RsaKey { pkey };
            if ffi::EVP_PKEY_assign_RSA(pkey, rsa) <= 0 {
                ffi::RSA_free(rsa);
                clear_errors();
                bail!("libcrypto cannot take the RSA key");
            }
            Ok(key)
        }
    }

    /// RSA PKCS#1 v1.5 signature over `digest`, an already computed digest
    /// of kind `kind` (deterministic: same key and digest, same bytes).
    ///
    /// Each signature is verified before it is returned: the key was
    /// loaded without checking that its private numbers agree (that check
    /// is bignum arithmetic worth more than the signature), and a key that
    /// is wrong in both of RSA's CRT halves would otherwise sign garbage
    /// that the kernel refuses only at module load. Verifying costs about
    /// 50 µs at 4096 bits (e = 65537).
    pub fn sign_digest(&self, kind: Digest, digest: &[u8]) -> Result<Vec<u8>> {
        let sig = self.sign_unchecked(kind, digest)?;
        self.verify_digest(kind, digest, &sig)?;
        Ok(sig)
    }

    fn sign_unchecked(&self, kind: Digest, digest: &[u8]) -> Result<Vec<u8>> {
        if digest.len() != kind.size() {
            bail!(
                "a {kind:?} digest is {} bytes, not {}",
                kind.size(),
                digest.len()
            );
        }
        let ctx = PkeyCtx::new(self.pkey)?;
        // SAFETY: ctx is a live context for our key; the sign calls write at
        // most `len` bytes into `sig`, which we size from the first call.
        unsafe {
            check(ffi::EVP_PKEY_sign_init(ctx.0), "EVP_PKEY_sign_init")?;
            check(
                ffi::EVP_PKEY_CTX_set_rsa_padding(ctx.0, ffi::RSA_PKCS1_PADDING),
                "setting PKCS#1 v1.5 padding",
            )?;
            check(
                ffi::EVP_PKEY_CTX_set_signature_md(ctx.0, kind.md() as *mut _),
                "setting the digest",
            )?;
            let mut len = 0usize;
            check(
                ffi::EVP_PKEY_sign(
                    ctx.0,
                    std::ptr::null_mut(),
                    &mut len,
                    digest.as_ptr(),
                    digest.len(),
                ),
                "sizing the signature",
            )?;
            let mut sig = vec![0u8; len];
            check(
                ffi::EVP_PKEY_sign(
                    ctx.0,
                    sig.as_mut_ptr(),
                    &mut len,
                    digest.as_ptr(),
                    digest.len(),
                ),
                "RSA signing",
            )?;
            sig.truncate(len);
            Ok(sig)
        }
    }
}

impl RsaKey {
    fn verify_digest(&self, kind: Digest, digest: &[u8], sig: &[u8]) -> Result<()> {
        let ctx = PkeyCtx::new(self.pkey)?;
        // SAFETY: ctx is a live context for our key; both buffers are
        // readable for their lengths.
        unsafe {
            check(ffi::EVP_PKEY_verify_init(ctx.0), "EVP_PKEY_verify_init")?;
            check(
                ffi::EVP_PKEY_CTX_set_rsa_padding(ctx.0, ffi::RSA_PKCS1_PADDING),
                "setting PKCS#1 v1.5 padding",
            )?;
            check(
                ffi::EVP_PKEY_CTX_set_signature_md(ctx.0, kind.md() as *mut _),
                "setting the digest",
            )?;
            let ok = ffi::EVP_PKEY_verify(
                ctx.0,
                sig.as_ptr(),
                sig.len(),
                digest.as_ptr(),
                digest.len(),
            );
            if ok != 1 {
                clear_errors();
                bail!("the RSA key made a signature its own public key does not verify: the key is damaged (its private numbers do not agree)");
            }
        }
        Ok(())
    }
}

impl Drop for RsaKey {
    fn drop(&mut self) {
        // SAFETY: we own the one reference made in from_pkcs1_der.
        unsafe { ffi::EVP_PKEY_free(self.pkey) }
    }
}

/// A signing context, freed on every path.
struct PkeyCtx(*mut ffi::EVP_PKEY_CTX);

impl PkeyCtx {
    fn new(pkey: *mut ffi::EVP_PKEY) -> Result<PkeyCtx> {
        // SAFETY: pkey is a live key; the context takes its own reference.
        let ctx = unsafe { ffi::EVP_PKEY_CTX_new(pkey, std::ptr::null_mut()) };
        if ctx.is_null() {
            clear_errors();
            bail!("libcrypto cannot make a signing context");
        }
        Ok(PkeyCtx(ctx))
    }
}

impl Drop for PkeyCtx {
    fn drop(&mut self) {
        // SAFETY: created by EVP_PKEY_CTX_new, freed once.
        unsafe { ffi::EVP_PKEY_CTX_free(self.0) }
    }
}

/// An incremental digest.
pub struct Hasher(*mut ffi::EVP_MD_CTX);

// SAFETY: the context is owned by one Hasher and only used through &mut.
unsafe impl Send for Hasher {}

impl Hasher {
    pub fn new(kind: Digest) -> Result<Hasher> {
        init();
        // SAFETY: a new context, owned by the Hasher (freed in Drop).
        let h = Hasher(unsafe { ffi::EVP_MD_CTX_new() });
        if h.0.is_null() {
            clear_errors();
            bail!("libcrypto cannot allocate a digest context");
        }
        // SAFETY: a live context and a static digest table.
        check(
            unsafe { ffi::EVP_DigestInit_ex(h.0, kind.md(), std::ptr::null_mut()) },
            "starting a digest",
        )?;
        Ok(h)
    }

    pub fn update(&mut self, data: &[u8]) -> Result<()> {
        // SAFETY: data is readable for its length.
        check(
            unsafe { ffi::EVP_DigestUpdate(self.0, data.as_ptr().cast(), data.len()) },
            "hashing",
        )
    }

    /// A copy of the state so far (to finish one digest and go on with the
    /// other).
    pub fn try_clone(&self) -> Result<Hasher> {
        // SAFETY: a new context, owned by the copy; src is live.
        let h = Hasher(unsafe { ffi::EVP_MD_CTX_new() });
        if h.0.is_null() {
            clear_errors();
            bail!("libcrypto cannot allocate a digest context");
        }
        check(
            unsafe { ffi::EVP_MD_CTX_copy_ex(h.0, self.0) },
            "copying a digest",
        )?;
        Ok(h)
    }

    pub fn finish(self) -> Result<Vec<u8>> {
        let mut out = vec![0u8; ffi::EVP_MAX_MD_SIZE as usize];
        let mut n = 0u32;
        // SAFETY: out holds EVP_MAX_MD_SIZE bytes, the most any digest writes.
        check(
            unsafe { ffi::EVP_DigestFinal_ex(self.0, out.as_mut_ptr(), &mut n) },
            "finishing a digest",
        )?;
        out.truncate(n as usize);
        Ok(out)
    }
}

/// Hash what is written (for `std::io::copy`).
impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        // SAFETY: created by EVP_MD_CTX_new, freed once.
        unsafe { ffi::EVP_MD_CTX_free(self.0) }
    }
}

/// The sha256 of `data`.
pub fn sha256(data: &[u8]) -> Result<[u8; 32]> {
    let d = digest(Digest::Sha256, data)?;
    Ok(d.try_into().expect("a sha256 is 32 bytes"))
}

/// The `kind` digest of `data`.
pub fn digest(kind: Digest, data: &[u8]) -> Result<Vec<u8>> {
    let mut h = Hasher::new(kind)?;
    h.update(data)?;
    h.finish()
}

/// libcrypto's return convention: 1 (or more) is success.
fn check(rc: c_int, what: &str) -> Result<()> {
    if rc > 0 {
        return Ok(());
    }
    // SAFETY: reads the most recent entry of this thread's error queue
    // (cleared below).
    let code = unsafe { ffi::ERR_peek_last_error() };
    clear_errors();
    bail!("{what} failed (libcrypto error {code:#x})")
}

fn clear_errors() {
    // SAFETY: clears this thread's error queue.
    unsafe { ffi::ERR_clear_error() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::EncodeRsaPrivateKey;

    #[test]
    fn signs_like_the_rsa_crate_and_refuses_garbage() {
        let mut rng = rand::thread_rng();
        let key = rsa::RsaPrivateKey::new(&mut rng, 1024).unwrap();
        let der = key.to_pkcs1_der().unwrap();
        let ours = RsaKey::from_pkcs1_der(der.as_bytes()).unwrap();
        let digest = <sha2::Sha256 as sha2::Digest>::digest(b"module");
        let sig = ours.sign_digest(Digest::Sha256, &digest).unwrap();
        let theirs = key
            .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest)
            .unwrap();
        assert_eq!(sig, theirs);
        assert!(ours.sign_digest(Digest::Sha512, &digest).is_err());
        assert!(RsaKey::from_pkcs1_der(b"\x30\x03\x02\x01\x00").is_err());
        assert!(RsaKey::from_pkcs1_der(b"").is_err());
    }

    #[test]
    fn digests_match_the_sha2_crate() {
        use sha2::Digest as _;
        let data = vec![7u8; 100_000];
        assert_eq!(
            digest(Digest::Sha256, &data).unwrap(),
            sha2::Sha256::digest(&data).to_vec()
        );
        assert_eq!(
            digest(Digest::Sha384, &data).unwrap(),
            sha2::Sha384::digest(&data).to_vec()
        );
        assert_eq!(
            digest(Digest::Sha512, &data).unwrap(),
            sha2::Sha512::digest(&data).to_vec()
        );
        let mut h = Hasher::new(Digest::Sha256).unwrap();
        h.update(&data[..10]).unwrap();
        let part = h.try_clone().unwrap().finish().unwrap();
        h.update(&data[10..]).unwrap();
        assert_eq!(part, sha2::Sha256::digest(&data[..10]).to_vec());
        assert_eq!(h.finish().unwrap(), sha2::Sha256::digest(&data).to_vec());
    }
}
