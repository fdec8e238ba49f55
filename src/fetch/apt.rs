//! Debian family: kernel packages through the machine's own apt configuration
//! (`apt-cache`, `apt-get download`), verified against the SHA256 apt
//! recorded from the signed Release/Packages files, stored in the cache and
//! unpacked with `dpkg-deb -x` (never installed).

use super::cache::Cache;
use super::digest::{Algo, Checksum};
use super::repo::Role;
use super::FetchedFile;
use crate::kernel::KernelRelease;
use crate::progress::Reporter;
use crate::util::memo::{dir_witnesses, Memo, Witness};
use crate::util::proc::process;
use crate::util::validate;
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

/// A package stanza from `apt-cache show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptPackage {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// Pool path; its last component is the .deb file name.
    pub filename: String,
    pub size: u64,
    pub sha256: Checksum,
}

impl AptPackage {
    pub fn file_name(&self) -> &str {
        self.filename.rsplit('/').next().unwrap_or(&self.filename)
    }
}

fn run(cmd: &str, args: &[&str], dir: Option<&Path>) -> Result<String> {
    let mut p = process(cmd);
    p.args(args);
    if let Some(d) = dir {
        p.cwd(d);
    }
    Ok(String::from_utf8_lossy(&p.output()?.stdout).into_owned())
}

/// The kernel the distro currently ships: the `linux-image-<abi>-<flavour>`
/// dependency of `metapackage` (`apt-cache depends linux-image-amd64`).
pub fn current_kernel(metapackage: &str) -> Result<KernelRelease> {
    validate::package_token("apt metapackage", metapackage).map_err(|e| anyhow!(e))?;
    let out = run("apt-cache", &["depends", metapackage], None)?;
    parse_depends(metapackage, &out)
}

fn parse_depends(metapackage: &str, out: &str) -> Result<KernelRelease> {
    for line in out.lines() {
        let line = line.trim().trim_start_matches('|');
        let Some(dep) = line.strip_prefix("Depends:") else {
            continue;
        };
        let dep = dep.trim();
        if let Some(rel) = dep.strip_prefix("linux-image-") {
            let rel = rel.strip_suffix("-unsigned").unwrap_or(rel);
            if rel.starts_with(|c: char| c.is_ascii_digit()) {
                return KernelRelease::parse(rel)
                    .map_err(|e| anyhow!("apt-cache depends {metapackage}: {e}"));
            }
        }
    }
    bail!("apt-cache depends {metapackage}: no linux-image-<version> dependency (run apt-get update?)")
}

/// The files apt reads to answer `apt-cache depends` and `apt-cache show`
/// (candidates, versions, checksums), at Debian's default locations; `None`
/// (do not remember) when apt is configured elsewhere (`APT_CONFIG`) or has
/// no lists there. What [`Memo`] answers for apt are keyed on.
pub fn witnesses() -> Option<Vec<Witness>> {
    if std::env::var_os("APT_CONFIG").is_some() {
        return None;
    }
    let lists = Path::new("/var/lib/apt/lists");
    if !lists.is_dir() {
        return None;
    }
    let mut w = dir_witnesses(lists);
    for f in [
        "/var/lib/dpkg/status",
        "/etc/apt/preferences",
        "/etc/apt/apt.conf",
    ] {
        w.push(Witness::of(Path::new(f)));
    }
    for d in [
        "/etc/apt/preferences.d",
        "/etc/apt/apt.conf.d",
        "/etc/apt/sources.list.d",
    ] {
        w.extend(dir_witnesses(Path::new(d)));
    }
    Some(w)
}

/// The kernel `metapackage` depends on (`apt-cache depends`), remembered in
/// `memo` while apt's lists, dpkg's status and apt's configuration are
/// unchanged.
pub fn current_kernel_memo(memo: Option<&Memo>, metapackage: &str) -> Result<KernelRelease> {
    let ask = || current_kernel(metapackage).map(|k| k.to_string());
    let k = match memo {
        Some(m) => m.answer(&format!("apt-cache depends {metapackage}"), witnesses, ask)?,
        None => ask()?,
    };
    KernelRelease::parse(&k).map_err(|e| anyhow!("{e}"))
}

/// `apt-cache show` for one package: `name=version` when `version` is given,
/// else the candidate version. Remembered in `memo` like
/// [`current_kernel_memo`]: a build served from the cache asks for three
/// packages, at about 0.4 s each.
pub fn show(memo: Option<&Memo>, name: &str, version: Option<&str>) -> Result<AptPackage> {
    validate::package_token("package", name).map_err(|e| anyhow!(e))?;
    let spec = match version {
        Some(v) => {
            if v.is_empty()
                || v.contains(|c: char| !(c.is_ascii_alphanumeric() || ".+-~:".contains(c)))
            {
                bail!("bad Debian version {v:?}");
            }
            format!("{name}={v}")
        }
        None => name.to_string(),
    };
    let ask = || {
        run("apt-cache", &["show", "--no-all-versions", &spec], None)
            .with_context(|| format!("{spec} is not available from this machine's apt sources"))
    };
    let out = match memo {
        Some(m) => m.answer(
            &format!("apt-cache show --no-all-versions {spec}"),
            witnesses,
            ask,
        )?,
        None => ask()?,
    };
    parse_show(&spec, &out)
}

fn parse_show(spec: &str, out: &str) -> Result<AptPackage> {
    let stanza = out
        .split("\n\n")
        .find(|s| !s.trim().is_empty())
        .ok_or_else(|| anyhow!("apt-cache show {spec}: no package"))?;
    let field = |k: &str| {
        stanza
            .lines()
            .find_map(|l| {
                l.strip_prefix(k)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(|v| v.trim().to_string())
            })
            .ok_or_else(|| anyhow!("apt-cache show {spec}: no {k} field"))
    };
    let size = field("Size")?;
    let p = AptPackage {
        name: field("Package")?,
        version: field("Version")?,
        arch: field("Architecture")?,
        filename: field("Filename")?,
        size: size
            .parse()
            .map_err(|_| anyhow!("apt-cache show {spec}: bad Size {size:?}"))?,
        sha256: Checksum::new(Algo::Sha256, &field("SHA256")?)
            .with_context(|| format!("apt-cache show {spec}"))?,
    };
    super::cache::check_file_name(p.file_name())
        .with_context(|| format!("apt-cache show {spec}"))?;
    Ok(p)
}

/// The Debian packages a kernel build needs, with their roles.
pub fn kernel_packages(kernel: &KernelRelease, with_image: bool) -> Result<Vec<(Role, String)>> {
    if kernel.flavor != crate::kernel::Flavor::Debian {
        bail!("{kernel} is not a Debian kernel release");
    }
    let abi = kernel.version_release();
    let flavour = match &kernel.variant {
        Some(v) => format!("{v}-{}", kernel.arch.as_deref().unwrap_or("amd64")),
        None => kernel.arch.clone().unwrap_or_else(|| "amd64".into()),
    };
    let mm: Vec<&str> = kernel.version.split('.').take(2).collect();
    let mut v = Vec::new();
    if with_image {
        v.push((Role::Image, format!("linux-image-{abi}-{flavour}")));
    }
    v.push((Role::Headers, format!("linux-headers-{abi}-{flavour}")));
    v.push((Role::HeadersCommon, format!("linux-headers-{abi}-common")));
    v.push((Role::Kbuild, format!("linux-kbuild-{}", mm.join("."))));
    for (_, n) in &v {
        validate::package_token("package", n).map_err(|e| anyhow!(e))?;
    }
    Ok(v)
}

/// The extra Debian packages a kpatch build needs, with their roles: the
/// kernel source (`linux-source-<mm>`, one tarball per upload) and the
/// debug image (`linux-image-<abi>-<flavour>-dbg`, vmlinux with DWARF).
/// Both must be the same source upload as the headers.
pub fn kpatch_packages(kernel: &KernelRelease) -> Result<Vec<(Role, String)>> {
    let image = kernel_packages(kernel, true)?
        .into_iter()
        .find(|(r, _)| *r == Role::Image)
        .map(|(_, n)| n)
        .context("no linux-image package name")?;
    let mm: Vec<&str> = kernel.version.split('.').take(2).collect();
    let v = vec![
        (Role::Source, format!("linux-source-{}", mm.join("."))),
        (Role::Debuginfo, format!("{image}-dbg")),
    ];
    for (_, n) in &v {
        validate::package_token("package", n).map_err(|e| anyhow!(e))?;
    }
    Ok(v)
}

/// Where a Debian -dbg package keeps the kernel's vmlinux.
pub fn dbg_vmlinux_member(kernel: &KernelRelease) -> String {
    format!("./usr/lib/debug/boot/vmlinux-{kernel}")
}

/// Stream one regular file out of a verified .deb into the cache, without
/// unpacking the rest: `dpkg-deb --fsys-tarfile` (whatever the data
/// compression) read as a tar until `member` is found. The -dbg package is
/// 5.6 GB unpacked; vmlinux is near its start. Keyed by the package digest
/// and member name; the file appears by rename once complete.
pub fn extract_member(cache: &Cache, deb: &FetchedFile, member: &str) -> Result<PathBuf> {
    let key = super::digest::digest(
        Algo::Sha256,
        format!("{}\0{member}", deb.checksum).as_bytes(),
    )
    .hex;
    let name = member.rsplit('/').next().unwrap_or(member).to_string();
    validate::package_token("member", &name).map_err(|e| anyhow!(e))?;
    let dest_dir = cache.unpacked_dir(&key);
    let dest = dest_dir.join(&name);
    if dest.is_file() {
        return Ok(dest);
    }
    let scratch = cache.scratch_dir()?;
    let tmp = scratch.path().join(&name);
    let found = with_deb_filesystem(&deb.path, |tar| copy_tar_member(tar, member, &tmp));
    if !found.with_context(|| format!("reading {} from {}", member, deb.package))? {
        bail!("{} has no {member}", deb.package);
    }
    std::fs::create_dir_all(&dest_dir)?;
    std::fs::rename(&tmp, &dest)
        .with_context(|| format!("moving {} into the cache", dest.display()))?;
    crate::util::fsx::sync_dir(&dest_dir)?;
    Ok(dest)
}

/// Stream a .deb's file system (`dpkg-deb --fsys-tarfile`) into `read`,
/// without writing the tarball anywhere. The child is reaped whatever `read`
/// does; `read`'s own error (a short or corrupt stream) is the one reported.
pub fn with_deb_filesystem<T>(
    deb: &Path,
    read: impl FnOnce(std::process::ChildStdout) -> Result<T>,
) -> Result<T> {
    let mut dpkg = process("dpkg-deb");
    dpkg.arg("--fsys-tarfile").arg(deb);
    let mut child = dpkg
        .command()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| dpkg.spawn_error(e))?;
    let out = child.stdout.take().context("dpkg-deb stdout")?;
    let r = read(out);
    let _ = child.kill();
    let _ = child.wait();
    r
}

/// Copy `member` of the tar stream to `dest`; false when it is not there.
fn copy_tar_member(r: impl std::io::Read, member: &str, dest: &Path) -> Result<bool> {
    let want = member.trim_start_matches("./");
    let mut ar = tar::Archive::new(r);
    for e in ar.entries()? {
        let mut e = e?;
        let path = e
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if path != want {
            continue;
        }
        if e.header().entry_type() != tar::EntryType::Regular {
            bail!("{member} is not a regular file");
        }
        let mut f =
            std::fs::File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
        std::io::copy(&mut e, &mut f)?;
        f.sync_all()?;
        return Ok(true);
    }
    Ok(false)
}

/// Download one package with `apt-get download` into the cache (or find it
/// there), verified against apt's SHA256 and size.
pub fn fetch_deb(
    cache: &Cache,
    pkg: &AptPackage,
    role: Role,
    progress: &dyn Reporter,
) -> Result<FetchedFile> {
    let spec = format!("{}={}", pkg.name, pkg.version);
    let done = |path: PathBuf, cached: bool| FetchedFile {
        role,
        package: spec.clone(),
        path,
        checksum: pkg.sha256.to_string(),
        size: pkg.size,
        source: "apt".into(),
        cached,
    };
    if let Some(p) = cache.lookup(&pkg.sha256) {
        return Ok(done(p, true));
    }
    let fp = progress.child(pkg.file_name(), Some(pkg.size));
    let scratch = cache.scratch_dir()?;
    // apt drops privileges to _apt for downloads; let it write here.
    let _ = std::fs::set_permissions(
        scratch.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    );
    run("apt-get", &["download", "-q", &spec], Some(scratch.path()))
        .with_context(|| format!("downloading {spec}"))?;
    let deb = std::fs::read_dir(scratch.path())?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| anyhow!("apt-get download {spec} produced no .deb"))?;
    let mut h = Algo::Sha256.hasher();
    let mut f = std::fs::File::open(&deb)?;
    let size = std::io::copy(&mut f, &mut super::cache::HashWriter(&mut h))?;
    let got = h.finish();
    if got != pkg.sha256 || size != pkg.size {
        bail!(
            "checksum mismatch for {spec} (apt-get download): expected {} ({} bytes), got {got} ({size} bytes)",
            pkg.sha256,
            pkg.size
        );
    }
    let path = cache.commit(&deb, &got, pkg.file_name())?;
    fp.finish(true, "ok");
    Ok(done(path, false))
}

/// `modules.dep` and friends for an unpacked linux-image: the package ships
/// none (the host's depmod writes them at install time), and whoever loads
/// modules from this tree (verify's qemu guest) needs the dependencies.
/// depmod replaces its files by rename, so concurrent runs are harmless.
pub fn depmod(root: &Path, kernel: &KernelRelease, modules_dir: &Path) -> Result<()> {
    if modules_dir.join("modules.dep").is_file() {
        return Ok(());
    }
    let r = root
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 cache path {}", root.display()))?;
    run("depmod", &["-b", r, kernel.as_str()], None)
        .with_context(|| format!("depmod for the unpacked {kernel} modules"))?;
    Ok(())
}

/// Unpack verified .deb files together into one directory (relative symlinks
/// between linux-headers-*, -common and linux-kbuild then resolve), keyed by
/// their digests. The directory appears by rename only after every
/// `dpkg-deb -x` succeeded.
pub fn unpack_merged(cache: &Cache, debs: &[&FetchedFile]) -> Result<PathBuf> {
    let mut sums: Vec<&str> = debs.iter().map(|d| d.checksum.as_str()).collect();
    sums.sort();
    let key = super::digest::digest(Algo::Sha256, sums.join("\n").as_bytes()).hex;
    let dest = cache.unpacked_dir(&key);
    if dest.is_dir() {
        return Ok(dest);
    }
    let scratch = cache.scratch_dir()?;
    let root = scratch.path().join("root");
    std::fs::create_dir(&root)?;
    for d in debs {
        let deb = d
            .path
            .to_str()
            .ok_or_else(|| anyhow!("non-UTF-8 cache path {}", d.path.display()))?;
        let r = root
            .to_str()
            .ok_or_else(|| anyhow!("non-UTF-8 cache path {}", root.display()))?;
        run("dpkg-deb", &["-x", deb, r], None)
            .with_context(|| format!("unpacking {}", d.package))?;
    }
    match std::fs::rename(&root, &dest) {
        Ok(()) => {}
        Err(_) if dest.is_dir() => return Ok(dest), // another run won the race
        Err(e) => {
            return Err(e)
                .with_context(|| format!("moving unpacked packages to {}", dest.display()))
        }
    }
    crate::util::fsx::sync_dir(dest.parent().unwrap_or(cache.root()))?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_parsing() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n";
        assert_eq!(
            parse_depends("linux-image-amd64", out).unwrap().as_str(),
            "6.1.0-56-amd64"
        );
        let out = "linux-image-cloud-amd64\n |Depends: linux-image-6.1.0-56-cloud-amd64-unsigned\n";
        assert_eq!(
            parse_depends("m", out).unwrap().variant.as_deref(),
            Some("cloud")
        );
        assert!(parse_depends("m", "m\n  Depends: foo\n").is_err());
    }

    #[test]
    fn show_parsing() {
        let out = format!(
            "Package: linux-kbuild-6.1\nVersion: 6.1.192-2\nArchitecture: amd64\nFilename: pool/main/l/linux/linux-kbuild-6.1_6.1.192-2_amd64.deb\nSize: 123\nSHA256: {}\nDescription: x\n\nPackage: other\n",
            "a".repeat(64)
        );
        let p = parse_show("linux-kbuild-6.1", &out).unwrap();
        assert_eq!((p.version.as_str(), p.size), ("6.1.192-2", 123));
        assert_eq!(p.file_name(), "linux-kbuild-6.1_6.1.192-2_amd64.deb");
        let bad = out.replace("pool/main/l/linux/linux-kbuild", "pool/../..");
        assert!(
            parse_show("x", &bad).is_err() || parse_show("x", &bad).unwrap().file_name() != ".."
        );
    }

    #[test]
    fn package_names() {
        let k = KernelRelease::parse("6.1.0-56-amd64").unwrap();
        let v: Vec<String> = kernel_packages(&k, true)
            .unwrap()
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        assert_eq!(
            v,
            [
                "linux-image-6.1.0-56-amd64",
                "linux-headers-6.1.0-56-amd64",
                "linux-headers-6.1.0-56-common",
                "linux-kbuild-6.1"
            ]
        );
    }
}
