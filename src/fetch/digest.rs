//! Checksums as repository metadata names them (`sha256`, `sha`, `sha512`, ...)
//! and a hasher that can run beside the network reader.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::fmt;

/// A digest algorithm a yum repository may use. `md5` is refused: it proves nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Algo {
    /// Parse the `type` attribute of a `<checksum>` element (`sha` means sha1).
    pub fn parse(s: &str) -> Result<Algo> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "sha" | "sha1" => Algo::Sha1,
            "sha224" => Algo::Sha224,
            "sha256" => Algo::Sha256,
            "sha384" => Algo::Sha384,
            "sha512" => Algo::Sha512,
            other => bail!("unsupported checksum type {other:?} (supported: sha1, sha224, sha256, sha384, sha512)"),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Algo::Sha1 => "sha1",
            Algo::Sha224 => "sha224",
            Algo::Sha256 => "sha256",
            Algo::Sha384 => "sha384",
            Algo::Sha512 => "sha512",
        }
    }

    /// Length of the lowercase hex digest.
    pub fn hex_len(self) -> usize {
        match self {
            Algo::Sha1 => 40,
            Algo::Sha224 => 56,
            Algo::Sha256 => 64,
            Algo::Sha384 => 96,
            Algo::Sha512 => 128,
        }
    }

    pub fn hasher(self) -> Hasher {
        match self {
            Algo::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Algo::Sha224 => Hasher::Sha224(sha2::Sha224::new()),
            Algo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algo::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            Algo::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
}

/// An expected (or computed) digest: algorithm and lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Checksum {
    pub algo: Algo,
    pub hex: String,
}

impl Checksum {
    /// Validate a digest read from metadata: the right length, hex only. The
    /// hex ends up in cache paths, so nothing else may pass.
    pub fn new(algo: Algo, hex: &str) -> Result<Checksum> {
        let hex = hex.trim().to_ascii_lowercase();
        if hex.len() != algo.hex_len() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "invalid {} digest {:?}: expected {} hex digits",
                algo.name(),
                hex,
                algo.hex_len()
            );
        }
        Ok(Checksum { algo, hex })
    }

    /// Parse `type` and value as found in metadata.
    pub fn parse(kind: &str, hex: &str) -> Result<Checksum> {
        Checksum::new(Algo::parse(kind)?, hex)
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algo.name(), self.hex)
    }
}

/// One running digest of any supported algorithm.
#[derive(Clone)]
pub enum Hasher {
    Sha1(sha1::Sha1),
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha224(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn algo(&self) -> Algo {
        match self {
            Hasher::Sha1(_) => Algo::Sha1,
            Hasher::Sha224(_) => Algo::Sha224,
            Hasher::Sha256(_) => Algo::Sha256,
            Hasher::Sha384(_) => Algo::Sha384,
            Hasher::Sha512(_) => Algo::Sha512,
        }
    }

    pub fn finish(self) -> Checksum {
        let algo = self.algo();
        let hex = match self {
            Hasher::Sha1(h) => hex::encode(h.finalize()),
            Hasher::Sha224(h) => hex::encode(h.finalize()),
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha384(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        };
        Checksum { algo, hex }
    }
}

/// Digest of a byte slice.
pub fn digest(algo: Algo, data: &[u8]) -> Checksum {
    let mut h = algo.hasher();
    h.update(data);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        assert_eq!(
            digest(Algo::Sha256, b"abc").hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            digest(Algo::Sha1, b"abc").hex,
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(Algo::parse("sha").unwrap(), Algo::Sha1);
        assert!(Algo::parse("md5").is_err());
    }

    #[test]
    fn checksum_validation() {
        assert!(Checksum::parse("sha256", &"a".repeat(64)).is_ok());
        assert!(Checksum::parse("sha256", &"a".repeat(63)).is_err());
        assert!(Checksum::parse("sha256", &format!("../{}", "a".repeat(61))).is_err());
        assert_eq!(
            Checksum::parse("SHA256", &"A".repeat(64)).unwrap().hex,
            "a".repeat(64)
        );
    }
}
