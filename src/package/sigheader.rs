//! The RPM signature header, written as `rpmsign --addsign --rpmv3` does.
//!
//! The rpm crate signs the header only (RPMSIGTAG_RSA). EL7's rpm 4.11 checks
//! a header-only signature but then trusts the payload only through the
//! header's file digests at install time; `rpm -K` there reports the
//! header+payload signature (RPMSIGTAG_PGP) and MD5. So the signature header
//! carries both, as rpm 4.x `rpmsign --rpmv3` writes it:
//!
//! | tag  | name        | content                                   |
//! |------|-------------|-------------------------------------------|
//! | 268  | RSA         | OpenPGP v4 signature over the header      |
//! | 269  | SHA1        | hex SHA-1 of the header                   |
//! | 273  | SHA256      | hex SHA-256 of the header                 |
//! | 1000 | SIZE        | header + payload length                   |
//! | 1002 | PGP         | OpenPGP v4 signature over header+payload  |
//! | 1004 | MD5         | MD5 of header + payload                   |
//! | 1007 | PAYLOADSIZE | uncompressed cpio size (rpm2cpio checks it) |
//! | 1008 | RESERVEDSPACE | zeros, room for later in-place signing  |
//!
//! Both signatures are created at the same fixed time (SOURCE_DATE_EPOCH
//! when set), so equal inputs give equal bytes.

use crate::keys::PackageSigner;
use anyhow::{Context, Result};
use rpm::{Header, HeaderEntry, IndexData, IndexSignatureTag};
use sha2::Digest;

const RESERVED_SPACE: usize = 4128;

/// Replace `pkg`'s signature header with header-only and header+payload
/// OpenPGP signatures made by `signer` at time `t`.
pub fn sign_package(pkg: &mut rpm::Package, signer: &PackageSigner, t: u64) -> Result<()> {
    let header = pkg.header_bytes().context("serializing the RPM header")?;
    let mut both = Vec::with_capacity(header.len() + pkg.payload.len());
    both.extend_from_slice(&header);
    both.extend_from_slice(&pkg.payload);
    let size = u32::try_from(both.len()).context("package larger than 4 GiB")?;

    let payload_size = uncompressed_size(pkg)?;
    let header_sig = signer
        .sign_binary(&header, t)
        .context("signing the RPM header")?;
    let full_sig = signer
        .sign_binary(&both, t)
        .context("signing the RPM header and payload")?;

    let entries = vec![
        HeaderEntry {
            tag: IndexSignatureTag::RPMSIGTAG_RSA as u32,
            data: IndexData::Bin(header_sig),
        },
        HeaderEntry {
            tag: IndexSignatureTag::RPMSIGTAG_SHA1 as u32,
            data: IndexData::StringTag(hex::encode(sha1::Sha1::digest(&header))),
        },
        HeaderEntry {
            tag: IndexSignatureTag::RPMSIGTAG_SHA256 as u32,
            data: IndexData::StringTag(hex::encode(sha2::Sha256::digest(&header))),
        },
        HeaderEntry {
            tag: IndexSignatureTag::RPMSIGTAG_SIZE as u32,
            data: IndexData::Int32(vec![size]),
        },
        HeaderEntry {
            tag: IndexSignatureTag::RPMSIGTAG_PGP as u32,
            data: IndexData::Bin(full_sig),
        },
        HeaderEntry {
            tag: IndexSignatureTag::RPMSIGTAG_MD5 as u32,
            data: IndexData::Bin(md5::Md5::digest(&both).to_vec()),
        },
        HeaderEntry {
            tag: IndexSignatureTag::RPMSIGTAG_PAYLOADSIZE as u32,
            data: IndexData::Int32(vec![payload_size]),
        },
        HeaderEntry {
            tag: IndexSignatureTag::RPMSIGTAG_RESERVEDSPACE as u32,
            data: IndexData::Bin(vec![0u8; RESERVED_SPACE]),
        },
    ];
    pkg.metadata.signature = Header::from_entries(entries, IndexSignatureTag::HEADER_SIGNATURES);
    Ok(())
}

/// Size of the decompressed payload (the cpio archive).
fn uncompressed_size(pkg: &rpm::Package) -> Result<u32> {
    let data = pkg.payload.as_slice();
    let n = match pkg
        .payload_compression()
        .context("reading the payload compressor")?
    {
        rpm::CompressionType::Xz => std::io::copy(
            &mut liblzma::read::XzDecoder::new(data),
            &mut std::io::sink(),
        ),
        rpm::CompressionType::Gzip => std::io::copy(
            &mut flate2::read::GzDecoder::new(data),
            &mut std::io::sink(),
        ),
        rpm::CompressionType::None => Ok(data.len() as u64),
        other => anyhow::bail!("unexpected payload compression {other}"),
    }
    .context("decompressing the payload")?;
    u32::try_from(n).context("payload larger than 4 GiB")
}
