//! Read a kernel module's `.modinfo` section straight from its ELF file, so
//! the agent can refuse a module built for another kernel before the kernel
//! sees it (no dependency on kmod's `modinfo` on the host).
//!
//! `.modinfo` is a sequence of NUL-terminated `key=value` strings
//! (`vermagic=6.1.0-56-amd64 SMP preempt mod_unload modversions `,
//! `name=livepatch_ipvs`, `livepatch=Y`, ...).

use anyhow::{bail, Context, Result};
use std::path::Path;

/// The `.modinfo` entries of a module, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModInfo {
    pub entries: Vec<(String, String)>,
}

impl ModInfo {
    /// First value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All values of `key` (keys may repeat: `alias`, `depends`).
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `vermagic`, as written.
    pub fn vermagic(&self) -> Option<&str> {
        self.get("vermagic")
    }

    /// The kernel release a module was built for: the first word of vermagic.
    pub fn kernel_release(&self) -> Option<&str> {
        self.vermagic().and_then(|v| v.split_whitespace().next())
    }

    /// The module's loaded name (`name=` from modpost).
    pub fn name(&self) -> Option<&str> {
        self.get("name")
    }

    /// True for livepatch modules (`livepatch=Y`).
    pub fn is_livepatch(&self) -> bool {
        self.get("livepatch") == Some("Y")
    }
}

fn u16_at(b: &[u8], off: usize, le: bool) -> Option<u16> {
    let s: [u8; 2] = b.get(off..off.checked_add(2)?)?.try_into().ok()?;
    Some(if le {
        u16::from_le_bytes(s)
    } else {
        u16::from_be_bytes(s)
    })
}
fn u32_at(b: &[u8], off: usize, le: bool) -> Option<u32> {
    let s: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(if le {
        u32::from_le_bytes(s)
    } else {
        u32::from_be_bytes(s)
    })
}
fn u64_at(b: &[u8], off: usize, le: bool) -> Option<u64> {
    let s: [u8; 8] = b.get(off..off.checked_add(8)?)?.try_into().ok()?;
    Some(if le {
        u64::from_le_bytes(s)
    } else {
        u64::from_be_bytes(s)
    })
}

/// Parse `.modinfo` from module bytes (ELF32 or ELF64, either endianness).
pub fn parse(bytes: &[u8]) -> Result<ModInfo> {
    if bytes.len() < 52 || &bytes[..4] != b"\x7fELF" {
        bail!("not an ELF file");
    }
    let is64 = match bytes[4] {
        1 => false,
        2 => true,
        c => bail!("unknown ELF class {c}"),
    };
    let le = match bytes[5] {
        1 => true,
        2 => false,
        d => bail!("unknown ELF data encoding {d}"),
    };
    let bad = || anyhow::anyhow!("truncated or corrupt ELF header");
    let (shoff, shentsize, shnum, shstrndx) = if is64 {
        (
            u64_at(bytes, 0x28, le).ok_or_else(bad)?,
            u16_at(bytes, 0x3a, le).ok_or_else(bad)?,
            u16_at(bytes, 0x3c, le).ok_or_else(bad)?,
            u16_at(bytes, 0x3e, le).ok_or_else(bad)?,
        )
    } else {
        (
            u32_at(bytes, 0x20, le).ok_or_else(bad)? as u64,
            u16_at(bytes, 0x2e, le).ok_or_else(bad)?,
            u16_at(bytes, 0x30, le).ok_or_else(bad)?,
            u16_at(bytes, 0x32, le).ok_or_else(bad)?,
        )
    };
    let section = |i: u16| -> Option<(u32, u64, u64)> {
        let base = usize::try_from(shoff)
            .ok()?
            .checked_add(usize::from(i).checked_mul(usize::from(shentsize))?)?;
        if is64 {
            Some((
                u32_at(bytes, base, le)?,
                u64_at(bytes, base.checked_add(0x18)?, le)?,
                u64_at(bytes, base.checked_add(0x20)?, le)?,
            ))
        } else {
            Some((
                u32_at(bytes, base, le)?,
                u32_at(bytes, base.checked_add(0x10)?, le)? as u64,
                u32_at(bytes, base.checked_add(0x14)?, le)? as u64,
            ))
        }
    };
    let slice = |off: u64, size: u64| -> Option<&[u8]> {
        let start = usize::try_from(off).ok()?;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        bytes.get(start..end)
    };
    if shnum == 0 || shstrndx >= shnum {
        bail!("ELF file has no section name table");
    }
    let (_, stroff, strsize) = section(shstrndx).ok_or_else(bad)?;
    let strtab = slice(stroff, strsize).ok_or_else(bad)?;
    for i in 0..shnum {
        let (name_off, off, size) = section(i).ok_or_else(bad)?;
        let name = strtab
            .get(name_off as usize..)
            .and_then(|s| s.split(|&b| b == 0).next())
            .unwrap_or_default();
        if name == b".modinfo" {
            let data = slice(off, size).context(".modinfo section lies outside the file")?;
            let entries = data
                .split(|&b| b == 0)
                .filter(|s| !s.is_empty())
                .filter_map(|s| {
                    let s = String::from_utf8_lossy(s);
                    s.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect();
            return Ok(ModInfo { entries });
        }
    }
    bail!("no .modinfo section: not a kernel module")
}

/// Read and parse a module file (plain, `.xz`, `.zst` or `.gz`).
pub fn read(path: &Path) -> Result<ModInfo> {
    use std::io::Read;
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path.to_string_lossy();
    let bytes = if name.ends_with(".xz") {
        let mut out = Vec::new();
        liblzma::read::XzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("decompressing {}", path.display()))?;
        out
    } else if name.ends_with(".zst") {
        zstd::decode_all(&raw[..]).with_context(|| format!("decompressing {}", path.display()))?
    } else if name.ends_with(".gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("decompressing {}", path.display()))?;
        out
    } else {
        raw
    };
    parse(&bytes).with_context(|| format!("{}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_in_tree_module_like_modinfo() {
        // A real module from the running system, compared with kmod's modinfo.
        let rel = crate::verify::qemu::debian_kernel_abi().expect("Debian kernel ABI");
        let ko = std::path::PathBuf::from(format!(
            "/lib/modules/{rel}/kernel/net/netfilter/ipvs/ip_vs.ko"
        ));
        let mi = read(&ko).unwrap();
        let out = crate::util::proc::process("modinfo")
            .args(["-F", "vermagic"])
            .arg(&ko)
            .output()
            .expect("kmod's modinfo");
        let want = String::from_utf8_lossy(&out.stdout)
            .trim_end_matches('\n')
            .to_string();
        assert_eq!(mi.vermagic().map(str::trim_end), Some(want.trim_end()));
        assert!(want.starts_with(&rel));
        assert_eq!(mi.kernel_release(), Some(rel.as_str()));
        assert_eq!(mi.name(), Some("ip_vs"));
        assert!(!mi.is_livepatch());
    }

    #[test]
    fn refuses_garbage() {
        assert!(parse(b"not an elf at all, long enough to pass the size check .........").is_err());
        let mut fake = vec![0u8; 64];
        fake[..4].copy_from_slice(b"\x7fELF");
        fake[4] = 2;
        fake[5] = 1;
        fake[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        fake[0x3c] = 5;
        fake[0x3e] = 1;
        assert!(parse(&fake).is_err());
    }

    /// Corrupted modules (random bytes overwritten, truncated) give errors or
    /// partial results, never a panic.
    #[test]
    fn corrupt_modules_never_panic() {
        let rel = crate::verify::qemu::debian_kernel_abi().expect("Debian kernel ABI");
        let ko = format!("/lib/modules/{rel}/kernel/lib/libcrc32c.ko");
        let good = std::fs::read(&ko).expect("libcrc32c.ko");
        let mut seed = 0x9E3779B97F4A7C15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..500 {
            let mut b = good.clone();
            for _ in 0..(next() % 8 + 1) {
                // Bias towards the ELF header and section table, where offsets live.
                let i = if next() % 2 == 0 {
                    (next() % 64) as usize
                } else {
                    (next() as usize) % b.len()
                };
                b[i] = next() as u8;
            }
            let cut = if next() % 4 == 0 {
                (next() as usize) % b.len()
            } else {
                b.len()
            };
            let _ = parse(&b[..cut]);
        }
    }
}
