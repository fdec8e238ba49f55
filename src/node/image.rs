//! `khotfix node image`: a minimal OCI image for DaemonSets: the static
//! `khotfix-node` binary alone, `FROM scratch`, built with the container
//! engine (podman). Nothing else is in it (no shell, no libc files), so the
//! binary must be statically linked: build it with
//! `RUSTFLAGS='-C target-feature=+crt-static' cargo build --profile node
//! --bin khotfix-node --target x86_64-unknown-linux-gnu`. A dynamically
//! linked binary (one with an ELF interpreter) is refused before anything
//! is built. The host is read under `/host` (`--root /host`).

use anyhow::{bail, Context, Result};
use std::path::Path;

/// The Containerfile: the binary alone.
pub const CONTAINERFILE: &str = "FROM scratch\n\
COPY khotfix-node /khotfix-node\n\
ENTRYPOINT [\"/khotfix-node\"]\n\
CMD [\"check\", \"--root\", \"/host\"]\n";

/// Does the ELF file ask for a program interpreter (`PT_INTERP`), i.e. is
/// it dynamically linked? Errors for anything but a 64-bit little-endian ELF.
pub fn has_interpreter(elf: &[u8]) -> Result<bool> {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        bail!("not a 64-bit little-endian ELF file");
    }
    let bad = || anyhow::anyhow!("truncated ELF program headers");
    let phoff = u64_at(0x20).ok_or_else(bad)? as usize;
    let phentsize = u16_at(0x36).ok_or_else(bad)? as usize;
    let phnum = u16_at(0x38).ok_or_else(bad)? as usize;
    for i in 0..phnum {
        const PT_INTERP: u32 = 3;
        if u32_at(phoff + i * phentsize).ok_or_else(bad)? == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Check the binary, lay out the build context in a temporary directory and
/// build `tag` with `engine`. With `dry_run`, only print the Containerfile
/// and the command.
pub fn build(binary: &Path, tag: &str, engine: &str, dry_run: bool) -> Result<()> {
    let bytes = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    if has_interpreter(&bytes).with_context(|| binary.display().to_string())? {
        bail!(
            "{} is dynamically linked; a FROM scratch image needs the static build (RUSTFLAGS='-C target-feature=+crt-static' cargo build --profile node --bin khotfix-node --target x86_64-unknown-linux-gnu)",
            binary.display()
        );
    }
    crate::util::validate::package_token("image tag", tag.replace([':', '/'], "-").as_str())
        .map_err(|e| anyhow::anyhow!(e))?;
    let ctx = tempfile::Builder::new()
        .prefix("khotfix-node-image.")
        .tempdir()?;
    let mut cmd = crate::util::proc::process(engine);
    cmd.args(["build", "--tag", tag, "--file"])
        .arg(ctx.path().join("Containerfile"))
        .arg(ctx.path());
    if dry_run {
        print!("{CONTAINERFILE}");
        println!("# {cmd}");
        return Ok(());
    }
    std::fs::write(ctx.path().join("Containerfile"), CONTAINERFILE)?;
    let dest = ctx.path().join("khotfix-node");
    std::fs::write(&dest, &bytes)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))?;
    cmd.output()?;
    println!("built {tag}");
    Ok(())
}
