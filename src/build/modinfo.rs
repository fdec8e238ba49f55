//! Read a kernel module's `.modinfo` section (what `modinfo` prints) without
//! running anything: enough ELF64 parsing to find one section.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// The `key=value` pairs of a module's `.modinfo`, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo(pub Vec<(String, String)>);

impl ModInfo {
    /// First value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The kernel release the module was built for (first word of vermagic).
    pub fn kernel_release(&self) -> Option<&str> {
        self.get("vermagic")
            .and_then(|v| v.split_whitespace().next())
    }
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// Parse `.modinfo` from the bytes of a little-endian ELF64 object.
pub fn parse(bytes: &[u8]) -> Result<ModInfo> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        bail!("not an ELF file");
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        bail!("not a little-endian 64-bit ELF object");
    }
    let bad = || anyhow::anyhow!("truncated or corrupt ELF section table");
    let shoff = u64_at(bytes, 0x28).ok_or_else(bad)? as usize;
    let shentsize = u16_at(bytes, 0x3A).ok_or_else(bad)? as usize;
    let shnum = u16_at(bytes, 0x3C).ok_or_else(bad)? as usize;
    let shstrndx = u16_at(bytes, 0x3E).ok_or_else(bad)? as usize;
    if shentsize < 0x28 || shstrndx >= shnum {
        return Err(bad());
    }
    let sh = |i: usize| -> Option<(u32, usize, usize)> {
        let base = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((
            u32_at(bytes, base)?,
            u64_at(bytes, base + 0x18)? as usize,
            u64_at(bytes, base + 0x20)? as usize,
        ))
    };
    let (_, stroff, strsize) = sh(shstrndx).ok_or_else(bad)?;
    let strtab = bytes
        .get(stroff..stroff.checked_add(strsize).ok_or_else(bad)?)
        .ok_or_else(bad)?;
    for i in 0..shnum {
        let (name, off, size) = sh(i).ok_or_else(bad)?;
        let n = strtab.get(name as usize..).ok_or_else(bad)?;
        let n = &n[..n.iter().position(|&c| c == 0).unwrap_or(n.len())];
        if n == b".modinfo" {
            let data = bytes
                .get(off..off.checked_add(size).ok_or_else(bad)?)
                .ok_or_else(bad)?;
            let pairs = data
                .split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .filter_map(|s| {
                    let s = String::from_utf8_lossy(s);
                    s.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect();
            return Ok(ModInfo(pairs));
        }
    }
    bail!("no .modinfo section (not a kernel module)")
}

/// Read a module file's `.modinfo`.
pub fn read(path: &Path) -> Result<ModInfo> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&bytes).with_context(|| format!("module {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_elf() {
        assert!(parse(b"hello").is_err());
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[0x3A] = 0x40;
        b[0x3C] = 1;
        assert!(parse(&b).is_err());
    }
}
