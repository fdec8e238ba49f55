//! Checks that run everywhere (no target kernel needed): the module's
//! `.modinfo` (vermagic, `livepatch=Y`), its appended signature, kmod's
//! `modinfo` view of both, and `rpm -K` of the package against the repo key
//! in a throw-away rpmdb.
//!
//! The ELF `.modinfo` section is parsed here rather than only trusting a tool
//! so the check works on hosts without kmod and names exactly which field is
//! wrong; kmod's `modinfo` is then run as an independent second opinion.

use super::Check;
use crate::util::proc::process;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// The magic string `scripts/sign-file` appends after the signature.
pub const SIG_MAGIC: &[u8] = b"~Module signature appended~\n";
/// `PKEY_ID_PKCS7` in `struct module_signature`.
pub const PKEY_ID_PKCS7: u8 = 2;

/// The `.modinfo` key/value pairs of a module: the reader shared by every stage.
pub use crate::modinfo::ModInfo;

/// The appended module signature (`struct module_signature` + PKCS#7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSignature {
    pub id_type: u8,
    pub sig_len: usize,
    /// Length of the module without the signature, magic and trailer.
    pub body_len: usize,
}

/// Split off the appended signature, if any.
pub fn module_signature(data: &[u8]) -> Result<Option<ModuleSignature>> {
    let Some(rest) = data.strip_suffix(SIG_MAGIC) else {
        return Ok(None);
    };
    if rest.len() < 12 {
        bail!("signature marker present but the module is too short for a signature trailer");
    }
    let tr = &rest[rest.len() - 12..];
    let sig_len = u32::from_be_bytes([tr[8], tr[9], tr[10], tr[11]]) as usize;
    let before = rest.len() - 12;
    if sig_len == 0 || sig_len > before {
        bail!("signature trailer claims {sig_len} signature bytes but only {before} precede it");
    }
    Ok(Some(ModuleSignature {
        id_type: tr[2],
        sig_len,
        body_len: before - sig_len,
    }))
}

struct Elf<'a> {
    data: &'a [u8],
    is64: bool,
    le: bool,
}

impl Elf<'_> {
    fn u16(&self, off: usize) -> Result<u16> {
        let b: [u8; 2] = self
            .data
            .get(off..off + 2)
            .context("truncated ELF")?
            .try_into()?;
        Ok(if self.le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }
    fn u32(&self, off: usize) -> Result<u32> {
        let b: [u8; 4] = self
            .data
            .get(off..off + 4)
            .context("truncated ELF")?
            .try_into()?;
        Ok(if self.le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }
    fn u64(&self, off: usize) -> Result<u64> {
        let b: [u8; 8] = self
            .data
            .get(off..off + 8)
            .context("truncated ELF")?
            .try_into()?;
        Ok(if self.le {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    }
    fn word(&self, off: usize) -> Result<u64> {
        if self.is64 {
            self.u64(off)
        } else {
            self.u32(off).map(u64::from)
        }
    }
}

/// ELF sections by name → bytes (sections of type NOBITS are skipped).
pub fn elf_sections(data: &[u8]) -> Result<BTreeMap<String, &[u8]>> {
    if data.len() < 0x34 || &data[..4] != b"\x7fELF" {
        bail!("not an ELF file");
    }
    let is64 = match data[4] {
        1 => false,
        2 => true,
        c => bail!("unknown ELF class {c}"),
    };
    let le = match data[5] {
        1 => true,
        2 => false,
        e => bail!("unknown ELF data encoding {e}"),
    };
    let e = Elf { data, is64, le };
    let (shoff, shentsize, shnum, shstrndx) = if is64 {
        (e.u64(0x28)?, e.u16(0x3a)?, e.u16(0x3c)?, e.u16(0x3e)?)
    } else {
        (
            e.u32(0x20)? as u64,
            e.u16(0x2e)?,
            e.u16(0x30)?,
            e.u16(0x32)?,
        )
    };
    let want = if is64 { 64 } else { 40 };
    if shentsize as usize != want {
        bail!("unexpected ELF section header size {shentsize}");
    }
    let hdr = |i: usize| -> Result<(u32, u32, u64, u64)> {
        let base = usize::try_from(shoff)? + i * shentsize as usize;
        let name = e.u32(base)?;
        let ty = e.u32(base + 4)?;
        let (off, size) = if is64 {
            (e.u64(base + 24)?, e.u64(base + 32)?)
        } else {
            (e.word(base + 16)?, e.word(base + 20)?)
        };
        Ok((name, ty, off, size))
    };
    let slice = |off: u64, size: u64| -> Result<&[u8]> {
        let (o, s) = (usize::try_from(off)?, usize::try_from(size)?);
        data.get(o..o.checked_add(s).context("ELF section size overflows")?)
            .context("ELF section extends past the end of the file")
    };
    let (_, _, stroff, strsize) = hdr(shstrndx as usize)?;
    let strtab = slice(stroff, strsize)?;
    let mut out = BTreeMap::new();
    for i in 0..shnum as usize {
        let (name, ty, off, size) = hdr(i)?;
        if ty == 8 || ty == 0 {
            continue; // SHT_NOBITS, SHT_NULL
        }
        let n = strtab
            .get(name as usize..)
            .context("ELF section name out of range")?;
        let n = &n[..n.iter().position(|&b| b == 0).unwrap_or(n.len())];
        out.insert(String::from_utf8_lossy(n).into_owned(), slice(off, size)?);
    }
    Ok(out)
}

/// Parse the `.modinfo` section of a module's bytes.
pub fn parse_modinfo(data: &[u8]) -> Result<ModInfo> {
    crate::modinfo::parse(data)
}

/// NUL-terminated printable strings in a module's string/data sections: the
/// candidates for `klp_object` names (see `boot::patched_object_candidates`).
pub fn module_strings(data: &[u8]) -> Result<Vec<String>> {
    let sections = elf_sections(data)?;
    let mut out = Vec::new();
    for (name, bytes) in sections {
        if !(name.starts_with(".rodata")
            || name.starts_with(".data")
            || name.starts_with(".kpatch"))
        {
            continue;
        }
        for s in bytes.split(|&b| b == 0) {
            if !s.is_empty() && s.len() <= 64 && s.iter().all(|b| b.is_ascii_graphic()) {
                out.push(String::from_utf8_lossy(s).into_owned());
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// vermagic's first word is the kernel release it was built for; the rest
/// (`SMP preempt mod_unload modversions`) must match the kernel's own
/// modules when a reference module is available.
pub fn check_vermagic(info: &ModInfo, kernel: &str, reference: Option<(&Path, &str)>) -> Check {
    let name = "vermagic";
    let Some(vm) = info.get("vermagic") else {
        return Check::fail(name, "the module's .modinfo has no vermagic");
    };
    let release = vm.split_whitespace().next().unwrap_or("");
    if release != kernel {
        return Check::fail(
            name,
            format!("vermagic {vm:?} is for {release}, not the target kernel {kernel}"),
        );
    }
    match reference {
        Some((path, want)) if want.trim() != vm.trim() => Check::fail(
            name,
            format!(
                "vermagic {vm:?} differs from the target kernel's own module {} ({want:?})",
                path.display()
            ),
        ),
        Some((path, _)) => Check::pass(name, format!("{} (same as {})", vm.trim(), path.display())),
        None => Check::pass(name, vm.trim().to_string()),
    }
}

/// `livepatch=Y` marks a livepatch module (the kernel taints with K).
pub fn check_livepatch_flag(info: &ModInfo) -> Check {
    match info.get("livepatch") {
        Some("Y") => Check::pass("livepatch", "livepatch: Y"),
        Some(v) => Check::fail("livepatch", format!("livepatch is {v:?}, expected \"Y\"")),
        None => Check::fail(
            "livepatch",
            "the module's .modinfo has no livepatch field (MODULE_INFO(livepatch, \"Y\") missing)",
        ),
    }
}

/// The appended PKCS#7 signature as laid out by `scripts/sign-file`.
pub fn check_signature_trailer(data: &[u8]) -> Check {
    let name = "signature";
    match module_signature(data) {
        Ok(Some(s)) if s.id_type == PKEY_ID_PKCS7 => Check::pass(
            name,
            format!(
                "PKCS#7 signature of {} bytes appended to {} bytes of module",
                s.sig_len, s.body_len
            ),
        ),
        Ok(Some(s)) => Check::fail(
            name,
            format!(
                "signature id type {} is not PKCS#7 ({PKEY_ID_PKCS7})",
                s.id_type
            ),
        ),
        Ok(None) => Check::fail(
            name,
            "the module is not signed (no \"~Module signature appended~\" trailer)",
        ),
        Err(e) => Check::fail(name, format!("malformed signature trailer: {e}")),
    }
}

/// Run kmod's `modinfo` and read its view: `livepatch`, `vermagic`,
/// `sig_id`, `signer`. Skipped when modinfo is not installed.
pub fn check_kmod_modinfo(module: &Path, kernel: &str) -> Check {
    let name = "modinfo";
    let out = match process("modinfo").arg(module).output() {
        Ok(o) => o,
        Err(e) if e.is_not_found() => return Check::skip(name, "kmod's modinfo is not installed"),
        Err(e) => return Check::fail(name, e.to_string()),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |k: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(k)
                .and_then(|r| r.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        })
    };
    let mut problems = Vec::new();
    if field("livepatch").as_deref() != Some("Y") {
        problems.push("no `livepatch: Y`".to_string());
    }
    match field("vermagic") {
        Some(v) if v.split_whitespace().next() == Some(kernel) => {}
        Some(v) => problems.push(format!("vermagic {v:?}")),
        None => problems.push("no vermagic".into()),
    }
    let sig_id = field("sig_id");
    if sig_id.as_deref() != Some("PKCS#7") {
        problems.push(format!(
            "sig_id is {:?}, expected PKCS#7",
            sig_id.unwrap_or_default()
        ));
    }
    let signer = field("signer").unwrap_or_default();
    if problems.is_empty() {
        Check::pass(
            name,
            format!("livepatch: Y, sig_id: PKCS#7, signer: {signer:?}"),
        )
    } else {
        Check::fail(
            name,
            format!("modinfo {}: {}", module.display(), problems.join("; ")),
        )
    }
}

/// Verify the module's PKCS#7 signature against the signing certificate with
/// `openssl cms -verify` (the kernel does the same with its keyring).
pub fn check_signature_crypto(data: &[u8], cert: &Path) -> Check {
    let name = "signature-valid";
    let sig = match module_signature(data) {
        Ok(Some(s)) => s,
        _ => return Check::fail(name, "no signature to verify"),
    };
    let run = || -> Result<std::process::Output> {
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let body = dir.path().join("body");
        let p7 = dir.path().join("sig.p7");
        let pem = dir.path().join("cert.pem");
        std::fs::write(&body, &data[..sig.body_len])?;
        std::fs::write(&p7, &data[sig.body_len..sig.body_len + sig.sig_len])?;
        let cert_bytes =
            std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
        if cert_bytes.starts_with(b"-----BEGIN") {
            std::fs::write(&pem, &cert_bytes)?;
        } else {
            process("openssl")
                .args(["x509", "-inform", "DER", "-in"])
                .arg(cert)
                .arg("-out")
                .arg(&pem)
                .output()
                .with_context(|| format!("{}: not a PEM or DER certificate", cert.display()))?;
        }
        Ok(process("openssl")
            .args([
                "cms",
                "-verify",
                "-binary",
                "-inform",
                "DER",
                "-nointern",
                "-noverify",
                "-purpose",
                "any",
                "-in",
            ])
            .arg(&p7)
            .arg("-content")
            .arg(&body)
            .arg("-certfile")
            .arg(&pem)
            .args(["-out", "/dev/null"])
            .output_unchecked()?)
    };
    match run() {
        Ok(o) if o.status.success() => {
            Check::pass(name, format!("signature verifies with {}", cert.display()))
        }
        Ok(o) => Check::fail(
            name,
            format!(
                "signature does not verify with {}: {}",
                cert.display(),
                last_line(&String::from_utf8_lossy(&o.stderr))
            ),
        ),
        Err(e) => Check::fail(name, format!("{e:#}")),
    }
}

/// `rpm -K` with the repository key imported into a temporary rpmdb
/// ([`crate::package::keydb`]): the digests and the OpenPGP signature must be
/// OK. An unsigned package ("digests OK" only) fails.
pub fn check_rpm_signature(rpm: &Path, key: &Path) -> Check {
    use crate::package::keydb::{KeyDb, SigVerdict};
    let name = "rpm-signature";
    let run = || -> Result<SigVerdict> {
        let file = std::path::absolute(rpm)
            .with_context(|| format!("{}: cannot resolve the path", rpm.display()))?;
        let file = file.to_string_lossy().into_owned();
        let verdicts = KeyDb::new(key)?.check(Path::new("/"), &[file])?;
        verdicts
            .into_iter()
            .next()
            .context("rpm -K gave no verdict")
    };
    let shown = rpm.display();
    match run() {
        Ok(SigVerdict::Good) => Check::pass(name, format!("{shown}: digests signatures OK")),
        Ok(SigVerdict::Unsigned) => Check::fail(
            name,
            format!("the package is not signed: {shown}: digests OK"),
        ),
        Ok(SigVerdict::Bad(why)) => Check::fail(name, format!("{shown}: {why}")),
        Err(e) => Check::fail(name, format!("{e:#}")),
    }
}

/// The RPM ships the very module that was checked (same bytes), found by
/// file name in the payload.
pub fn check_rpm_payload(rpm: &Path, module: &Path) -> Check {
    let name = "rpm-payload";
    let run = || -> Result<Check> {
        let file = module
            .file_name()
            .context("module path has no file name")?
            .to_string_lossy()
            .to_string();
        let list = process("rpm")
            .args(["-qlp", "--nosignature"])
            .arg(rpm)
            .output()?;
        let listing = String::from_utf8_lossy(&list.stdout);
        let Some(inside) = listing
            .lines()
            .find(|l| l.rsplit('/').next() == Some(file.as_str()))
        else {
            return Ok(Check::fail(
                name,
                format!("{} does not contain {file}", rpm.display()),
            ));
        };
        // A hotfix RPM is small: hold its cpio payload in memory rather
        // than wiring a pipe between the two tools.
        let cpio = process("rpm2cpio").arg(rpm).output()?.stdout;
        let payload = process("cpio")
            .args(["-i", "--quiet", "--to-stdout"])
            .arg(format!(".{inside}"))
            .stdin(cpio)
            .output_unchecked()?;
        let want =
            std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
        Ok(if payload.stdout == want {
            Check::pass(name, format!("{inside} is the verified module"))
        } else if payload.stdout.is_empty() {
            Check::fail(
                name,
                format!("could not extract {inside} from {}", rpm.display()),
            )
        } else {
            Check::fail(
                name,
                format!(
                    "{inside} in {} differs from the verified module",
                    rpm.display()
                ),
            )
        })
    };
    run().unwrap_or_else(|e| Check::fail(name, format!("{e:#}")))
}

fn last_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}
