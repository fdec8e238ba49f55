//! A structural check of an RPM's lead and headers, run before the rpm
//! crate parses a package from a mirror or a user.
//!
//! The rpm crate trusts the header's counts and offsets: a mutated entry
//! count overflows `count * 16` (a panic in debug builds, a huge allocation
//! in release), and an entry offset past the data store panics on slicing.
//! Found by tests/fuzz_readers.rs. This check applies rpm's own limits
//! (`hdrchkTags`: at most 0xffff entries; `hdrchkData`: at most 256 MiB of
//! data) and checks every index entry's type and range against the store,
//! reading only the index (never the data), so it is cheap and bounded.

use std::io::{Read, Seek, SeekFrom};

const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
const HEADER_MAGIC: [u8; 4] = [0x8e, 0xad, 0xe8, 0x01];
const LEAD_SIZE: u64 = 96;
/// rpm's limit on index entries per header.
const MAX_ENTRIES: u32 = 0xffff;
/// rpm's limit on a header's data store (256 MiB).
const MAX_DATA: u32 = 0x0fff_ffff;

/// Check the lead, the signature header and the main header of the package
/// read by `r`. The error is one line saying what is wrong.
pub fn check_structure<R: Read + Seek>(r: &mut R) -> Result<(), String> {
    let len = r
        .seek(SeekFrom::End(0))
        .map_err(|e| format!("cannot read: {e}"))?;
    r.seek(SeekFrom::Start(0))
        .map_err(|e| format!("cannot read: {e}"))?;
    let mut lead = [0u8; LEAD_SIZE as usize];
    read_exact(r, &mut lead, "the lead")?;
    if lead[..4] != LEAD_MAGIC {
        return Err("no RPM lead (not an RPM file)".into());
    }
    let sig_end = check_header(r, LEAD_SIZE, len, "signature header")?;
    // The main header starts at the next 8-byte boundary.
    let main_start = sig_end.div_ceil(8) * 8;
    r.seek(SeekFrom::Start(main_start))
        .map_err(|e| format!("cannot read: {e}"))?;
    check_header(r, main_start, len, "header")?;
    Ok(())
}

fn read_exact<R: Read>(r: &mut R, buf: &mut [u8], what: &str) -> Result<(), String> {
    r.read_exact(buf)
        .map_err(|e| format!("{what} is truncated ({e})"))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Check one header starting at `start`; returns where it ends.
fn check_header<R: Read + Seek>(
    r: &mut R,
    start: u64,
    len: u64,
    what: &str,
) -> Result<u64, String> {
    let mut intro = [0u8; 16];
    read_exact(r, &mut intro, what)?;
    if intro[..4] != HEADER_MAGIC {
        return Err(format!("{what}: bad magic"));
    }
    let entries = be32(&intro[8..12]);
    let data = be32(&intro[12..16]);
    if entries == 0 || entries > MAX_ENTRIES {
        return Err(format!(
            "{what}: {entries} index entries (1 to {MAX_ENTRIES} allowed)"
        ));
    }
    if data > MAX_DATA {
        return Err(format!(
            "{what}: data store of {data} bytes (at most {MAX_DATA})"
        ));
    }
    let end = start + 16 + u64::from(entries) * 16 + u64::from(data);
    if end > len {
        return Err(format!(
            "{what} ends at byte {end}, past the end of the file ({len} bytes): truncated"
        ));
    }
    let mut index = vec![0u8; entries as usize * 16];
    read_exact(r, &mut index, what)?;
    for (i, e) in index.chunks_exact(16).enumerate() {
        let (tag, ty, offset, count) = (be32(e), be32(&e[4..]), be32(&e[8..]), be32(&e[12..]));
        let bad = |why: &str| format!("{what}: index entry {i} (tag {tag}): {why}");
        let unit: Option<u64> = match ty {
            0 => Some(0),
            1 | 2 => Some(1),
            3 => Some(2),
            4 => Some(4),
            5 => Some(8),
            7 => Some(1),
            6 | 8 | 9 => None,
            _ => return Err(bad(&format!("unknown type {ty}"))),
        };
        if offset > data {
            return Err(bad(&format!(
                "offset {offset} past the data store ({data} bytes)"
            )));
        }
        let room = u64::from(data - offset);
        match unit {
            Some(u) if u64::from(count) * u > room => {
                return Err(bad(&format!("{count} values do not fit in the data store")))
            }
            // Strings take at least one byte each (the NUL).
            None if u64::from(count) > room || offset == data => {
                return Err(bad(&format!(
                    "{count} strings do not fit in the data store"
                )))
            }
            _ => {}
        }
    }
    r.seek(SeekFrom::Start(end))
        .map_err(|e| format!("{what}: cannot read: {e}"))?;
    Ok(end)
}

/// [`check_structure`] of the file at `path`.
pub fn check_file(path: &std::path::Path) -> Result<(), String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    check_structure(&mut std::io::BufReader::new(&mut f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg() -> Vec<u8> {
        let mut b = rpm::PackageBuilder::new("x", "1", "MIT", "noarch", "x");
        b.with_file_contents("a", rpm::FileOptions::new("/a"))
            .unwrap();
        let mut out = Vec::new();
        b.build().unwrap().write(&mut out).unwrap();
        out
    }

    #[test]
    fn good_and_bad() {
        let good = pkg();
        assert_eq!(check_structure(&mut std::io::Cursor::new(&good)), Ok(()));
        let mut huge = good.clone();
        huge[96 + 8..96 + 12].copy_from_slice(&0xffff_ffffu32.to_be_bytes());
        assert!(check_structure(&mut std::io::Cursor::new(&huge))
            .unwrap_err()
            .contains("index entries"));
        let cut = &good[..200];
        assert!(check_structure(&mut std::io::Cursor::new(cut))
            .unwrap_err()
            .contains("truncated"));
        assert!(check_structure(&mut std::io::Cursor::new(b"junk"))
            .unwrap_err()
            .contains("lead"));
    }
}
