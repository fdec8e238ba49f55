//! A qemu boot harness: boot a kernel image under `qemu-system-x86_64 -accel
//! tcg` with a generated busybox initramfs, run a guest shell script as init,
//! capture the serial console, enforce a timeout, and parse result lines.
//!
//! Why: the only honest test that a livepatch module loads and patches a
//! running kernel is to load it into a running kernel. KVM is not available
//! everywhere (and hangs on the CI machine), so this uses TCG; Debian's kernel
//! with a ~3 MiB initramfs boots in about 15 s.
//!
//! The guest script communicates results by printing lines of the form
//! `KHOTFIX-RESULT key=value` on the console; [`QemuRun::results`] collects
//! them (a later line with the same key wins). After the script ends the init
//! prints `KHOTFIX-RESULT script_exit=<code>` and powers the guest off.
//!
//! ```no_run
//! use khotfix::verify::qemu::{QemuSpec, boot};
//! let abi = khotfix::verify::qemu::debian_kernel_abi().unwrap();
//! let mut spec = QemuSpec::new(format!("/boot/vmlinuz-{abi}"), "echo KHOTFIX-RESULT hello=world");
//! spec.modules_dir = Some(format!("/lib/modules/{abi}").into());
//! spec.modules = vec!["ip_vs".into()];
//! let run = boot(&spec).unwrap();
//! assert_eq!(run.results.get("hello").map(String::as_str), Some("world"));
//! ```

use crate::util::proc::process;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The console marker the guest prints before `key=value`.
pub const RESULT_MARKER: &str = "KHOTFIX-RESULT ";

/// What to boot and what to run in the guest.
#[derive(Debug, Clone)]
pub struct QemuSpec {
    /// Kernel image (bzImage), e.g. `/boot/vmlinuz-6.1.0-56-amd64`.
    pub kernel: PathBuf,
    /// The kernel's modules tree (`/lib/modules/<abi>`), needed when
    /// [`modules`](Self::modules) is not empty.
    pub modules_dir: Option<PathBuf>,
    /// Modules to load before the script runs, by name (`ip_vs`); their
    /// dependencies from `modules.dep` are copied and loaded first.
    /// Compressed modules (`.ko.xz`, `.ko.zst`, `.ko.gz`) are decompressed at
    /// initramfs build time because busybox insmod cannot read them.
    pub modules: Vec<String>,
    /// Extra files: host path → absolute guest path.
    pub files: Vec<(PathBuf, String)>,
    /// Dynamically linked programs: host path → absolute guest path. Their
    /// shared libraries (from `ldd`) are copied to the same paths in the guest.
    pub binaries: Vec<(PathBuf, String)>,
    /// The guest shell script (busybox `sh`), run after /proc, /sys, /dev are
    /// mounted and the modules loaded.
    pub script: String,
    /// Wall-clock limit for the whole boot; qemu is killed when it passes.
    pub timeout: Duration,
    /// Guest memory in MiB (default 1024).
    pub memory_mib: u32,
    /// Extra kernel command line words.
    pub append: String,
    /// busybox binary to put in the initramfs (must be static).
    pub busybox: PathBuf,
    /// Also write the console to this file as it arrives.
    pub log: Option<PathBuf>,
    /// The qemu binary.
    pub qemu: PathBuf,
}

impl QemuSpec {
    /// A spec with defaults: 1024 MiB, 180 s timeout, `/usr/bin/busybox`
    /// (the busybox-static package), `qemu-system-x86_64` from PATH.
    pub fn new(kernel: impl Into<PathBuf>, script: impl Into<String>) -> Self {
        QemuSpec {
            kernel: kernel.into(),
            modules_dir: None,
            modules: Vec::new(),
            files: Vec::new(),
            binaries: Vec::new(),
            script: script.into(),
            timeout: Duration::from_secs(180),
            memory_mib: 1024,
            append: String::new(),
            busybox: PathBuf::from("/usr/bin/busybox"),
            log: None,
            qemu: PathBuf::from("qemu-system-x86_64"),
        }
    }
}

/// The outcome of one boot.
#[derive(Debug, Clone)]
pub struct QemuRun {
    /// Everything the guest printed on its serial console.
    pub console: String,
    /// Parsed `KHOTFIX-RESULT key=value` lines.
    pub results: BTreeMap<String, String>,
    /// True when the timeout killed qemu.
    pub timed_out: bool,
    /// The guest script's exit code, when it got that far.
    pub script_exit: Option<i32>,
    /// How long the boot took.
    pub elapsed: Duration,
}

/// Parse `KHOTFIX-RESULT key=value` lines from console text. Carriage returns
/// are ignored; a later key overrides an earlier one.
pub fn parse_results(console: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in console.lines() {
        let line = line.trim_end_matches('\r');
        let Some(at) = line.find(RESULT_MARKER) else {
            continue;
        };
        let rest = &line[at + RESULT_MARKER.len()..];
        if let Some((k, v)) = rest.split_once('=') {
            let k = k.trim();
            if !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            {
                out.insert(k.to_string(), v.trim().to_string());
            }
        }
    }
    out
}

/// Debian's current kernel ABI (`6.1.0-56-amd64`): what
/// `linux-image-amd64` depends on ([`crate::fetch::apt::current_kernel`],
/// the one lookup). It moves with security updates, so it is never
/// hard-coded.
pub fn debian_kernel_abi() -> Result<String> {
    Ok(crate::fetch::apt::current_kernel("linux-image-amd64")?
        .as_str()
        .to_string())
}

/// One entry of the initramfs.
enum Entry {
    Dir,
    File { data: Vec<u8>, mode: u32 },
    Symlink(String),
}

/// An in-memory initramfs tree, written as a gzip'd newc cpio archive.
#[derive(Default)]
pub struct Initramfs {
    entries: BTreeMap<String, Entry>,
}

impl Initramfs {
    /// Add a directory and its parents (guest path, absolute or relative).
    pub fn dir(&mut self, path: &str) {
        let rel = path.trim_matches('/');
        let mut acc = String::new();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            self.entries.entry(acc.clone()).or_insert(Entry::Dir);
        }
    }

    fn parent(&mut self, rel: &str) {
        if let Some((p, _)) = rel.rsplit_once('/') {
            self.dir(p);
        }
    }

    /// Add a file with the given bytes and permission bits.
    pub fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) -> Result<()> {
        let rel = guest_rel(path)?;
        self.parent(&rel);
        self.entries.insert(rel, Entry::File { data, mode });
        Ok(())
    }

    /// Copy a host file, keeping its executable bits.
    pub fn copy(&mut self, host: &Path, guest: &str) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let data = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        let mode = std::fs::metadata(host)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0o644);
        self.file(guest, data, mode)
    }

    /// Add a symlink.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let rel = guest_rel(path)?;
        self.parent(&rel);
        self.entries.insert(rel, Entry::Symlink(target.to_string()));
        Ok(())
    }

    /// Does the archive hold this path?
    pub fn contains(&self, path: &str) -> bool {
        guest_rel(path)
            .map(|r| self.entries.contains_key(&r))
            .unwrap_or(false)
    }

    /// Serialize as a newc cpio archive (uncompressed).
    pub fn to_cpio(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (ino, (name, e)) in (1u32..).zip(self.entries.iter()) {
            let (mode, data): (u32, &[u8]) = match e {
                Entry::Dir => (0o040755, &[]),
                Entry::File { data, mode } => (0o100000 | mode, data),
                Entry::Symlink(t) => (0o120777, t.as_bytes()),
            };
            let nlink = if matches!(e, Entry::Dir) { 2 } else { 1 };
            cpio_entry(&mut out, ino, mode, nlink, name, data);
        }
        cpio_entry(&mut out, 0, 0, 1, "TRAILER!!!", &[]);
        while out.len() % 512 != 0 {
            out.push(0);
        }
        out
    }

    /// Write the gzip'd archive to `path`.
    pub fn write_gz(&self, path: &Path) -> Result<()> {
        let f =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut gz =
            flate2::write::GzEncoder::new(std::io::BufWriter::new(f), flate2::Compression::fast());
        gz.write_all(&self.to_cpio())
            .with_context(|| format!("writing {}", path.display()))?;
        let mut w = gz
            .finish()
            .with_context(|| format!("writing {}", path.display()))?;
        w.flush()
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

fn guest_rel(path: &str) -> Result<String> {
    let rel = path.trim_start_matches('/');
    if rel.is_empty()
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        || rel.contains('\0')
    {
        bail!("bad guest path {path:?}: must be a normal absolute path without '.', '..' or empty components");
    }
    Ok(rel.to_string())
}

fn cpio_entry(out: &mut Vec<u8>, ino: u32, mode: u32, nlink: u32, name: &str, data: &[u8]) {
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        0,
        data.len() as u32,
        0,
        0,
        0,
        0,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out.extend_from_slice(data);
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// Read a module file, decompressing `.xz`, `.zst` and `.gz`.
fn read_module(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path.to_string_lossy();
    let mut out = Vec::new();
    if name.ends_with(".xz") {
        liblzma::read::XzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("decompressing {}", path.display()))?;
    } else if name.ends_with(".zst") {
        out = zstd::decode_all(&raw[..])
            .with_context(|| format!("decompressing {}", path.display()))?;
    } else if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("decompressing {}", path.display()))?;
    } else {
        out = raw;
    }
    Ok(out)
}

/// The loaded name of a module file: `kernel/net/ip_vs.ko.xz` → `ip_vs`.
fn module_name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// Modules to load, dependencies first, as paths relative to the modules dir.
/// Hard dependencies come from `modules.dep`; `pre:` soft dependencies from
/// `modules.softdep` (e.g. libcrc32c needs the crc32c algorithm) are resolved
/// through `modules.alias`, preferring a `_generic` implementation because
/// TCG's CPU lacks most accelerated instructions.
pub fn module_load_order(modules_dir: &Path, wanted: &[String]) -> Result<Vec<String>> {
    let dep_file = modules_dir.join("modules.dep");
    let text = std::fs::read_to_string(&dep_file)
        .with_context(|| format!("reading {}", dep_file.display()))?;
    let mut g = DepGraph::default();
    for line in text.lines() {
        let Some((m, deps)) = line.split_once(':') else {
            continue;
        };
        let deps: Vec<String> = deps.split_whitespace().map(str::to_string).collect();
        g.by_name.insert(module_name_of(m), (m.to_string(), deps));
    }
    // Optional files: a tree without them just has no soft dependencies.
    let aliases = std::fs::read_to_string(modules_dir.join("modules.alias")).unwrap_or_default();
    for line in aliases.lines() {
        let mut w = line.split_whitespace();
        if let (Some("alias"), Some(a), Some(m)) = (w.next(), w.next(), w.next()) {
            g.aliases
                .entry(a.to_string())
                .or_default()
                .push(m.to_string());
        }
    }
    let soft = std::fs::read_to_string(modules_dir.join("modules.softdep")).unwrap_or_default();
    for line in soft.lines() {
        let mut w = line.split_whitespace();
        if w.next() != Some("softdep") {
            continue;
        }
        let Some(m) = w.next() else { continue };
        let mut pre = false;
        for t in w {
            match t {
                "pre:" => pre = true,
                "post:" => pre = false,
                name if pre => g
                    .soft
                    .entry(m.replace('-', "_"))
                    .or_default()
                    .push(name.to_string()),
                _ => {}
            }
        }
    }
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for w in wanted {
        let key = w.replace('-', "_");
        let (path, _) = g
            .by_name
            .get(&key)
            .with_context(|| format!("module {w:?} is not in {}", dep_file.display()))?;
        g.visit(&path.clone(), &mut seen, &mut order, 0)?;
    }
    Ok(order)
}

#[derive(Default)]
struct DepGraph {
    by_name: HashMap<String, (String, Vec<String>)>,
    aliases: HashMap<String, Vec<String>>,
    soft: HashMap<String, Vec<String>>,
}

impl DepGraph {
    /// A softdep name is a module name or an alias of one or more modules.
    fn resolve(&self, name: &str) -> Option<String> {
        let key = name.replace('-', "_");
        if let Some((p, _)) = self.by_name.get(&key) {
            return Some(p.clone());
        }
        let cands = self.aliases.get(name)?;
        let pick = cands
            .iter()
            .find(|m| m.ends_with("_generic"))
            .or_else(|| cands.first())?;
        self.by_name
            .get(&pick.replace('-', "_"))
            .map(|(p, _)| p.clone())
    }

    fn visit(
        &self,
        path: &str,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
        depth: usize,
    ) -> Result<()> {
        if depth > 64 {
            bail!("modules.dep: dependency chain too deep at {path}");
        }
        if !seen.insert(path.to_string()) {
            return Ok(());
        }
        let name = module_name_of(path);
        if let Some(soft) = self.soft.get(&name) {
            for s in soft {
                if let Some(p) = self.resolve(s) {
                    self.visit(&p, seen, order, depth + 1)?;
                }
            }
        }
        if let Some((_, deps)) = self.by_name.get(&name) {
            // modules.dep lists the full closure, deepest last: load in reverse.
            for d in deps.iter().rev() {
                self.visit(d, seen, order, depth + 1)?;
            }
        }
        order.push(path.to_string());
        Ok(())
    }
}

/// Shared libraries a dynamically linked program needs, from `ldd`.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = process("ldd").arg(binary).output_unchecked()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if text.contains("not a dynamic executable")
            || String::from_utf8_lossy(&out.stderr).contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        bail!(
            "ldd {} failed: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("not found") {
            bail!("ldd {}: {line}", binary.display());
        }
        let cand = match line.split_once("=>") {
            Some((_, rhs)) => rhs.trim(),
            None => line,
        };
        if let Some(p) = cand
            .split_whitespace()
            .next()
            .filter(|p| p.starts_with('/'))
        {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

/// The init script: mount, load modules, run the guest script, power off.
fn init_script(module_files: &[String]) -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         /bin/busybox --install -s /bin\n\
         export PATH=/bin:/sbin:/usr/bin:/usr/sbin\n\
         mkdir -p /proc /sys /dev /tmp /run\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev 2>/dev/null\n\
         mount -t tmpfs tmpfs /tmp\n\
         echo KHOTFIX-RESULT booted=1\n",
    );
    for m in module_files {
        s.push_str(&format!(
            "insmod /khotfix-modules/{m} || echo KHOTFIX-RESULT insmod_failed={m}\n",
            m = crate::util::validate::sh_quote(m)
        ));
    }
    s.push_str(
        "sh /khotfix-guest.sh\n\
         echo \"KHOTFIX-RESULT script_exit=$?\"\n\
         sync\n\
         poweroff -f\n\
         sleep 2\n\
         echo o > /proc/sysrq-trigger\n",
    );
    s
}

/// Build the initramfs for a spec (exposed for inspection and reuse).
pub fn build_initramfs(spec: &QemuSpec) -> Result<Initramfs> {
    let mut fs = Initramfs::default();
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "etc",
        "root",
        "khotfix-modules",
    ] {
        fs.dir(d);
    }
    fs.copy(&spec.busybox, "/bin/busybox").with_context(|| {
        format!(
            "busybox {} (install busybox-static)",
            spec.busybox.display()
        )
    })?;
    fs.symlink("/bin/sh", "busybox")?;
    let mut module_files = Vec::new();
    if !spec.modules.is_empty() {
        let dir = spec
            .modules_dir
            .as_ref()
            .context("modules requested but no modules_dir given")?;
        for rel in module_load_order(dir, &spec.modules)? {
            let data = read_module(&dir.join(&rel))?;
            let name = format!("{}.ko", module_name_of(&rel));
            fs.file(&format!("/khotfix-modules/{name}"), data, 0o644)?;
            module_files.push(name);
        }
    }
    for (host, guest) in &spec.binaries {
        for lib in shared_libraries(host)? {
            let guest_lib = lib.to_string_lossy().to_string();
            if !fs.contains(&guest_lib) {
                // Follow symlinks so the guest gets the real bytes at the named path.
                fs.copy(&lib, &guest_lib)?;
            }
        }
        fs.copy(host, guest)?;
    }
    for (host, guest) in &spec.files {
        fs.copy(host, guest)?;
    }
    fs.file("/init", init_script(&module_files).into_bytes(), 0o755)?;
    fs.file("/khotfix-guest.sh", spec.script.clone().into_bytes(), 0o755)?;
    Ok(fs)
}

/// Boot the spec and return what happened. Errors only when qemu cannot be
/// started or the inputs are unreadable; a guest that hangs returns with
/// `timed_out = true` and whatever console text arrived.
pub fn boot(spec: &QemuSpec) -> Result<QemuRun> {
    if !spec.kernel.is_file() {
        bail!("kernel image {}: no such file", spec.kernel.display());
    }
    let work = tempfile::Builder::new()
        .prefix("khotfix-qemu-")
        .tempdir()
        .context("creating a temporary directory")?;
    let initrd = work.path().join("initramfs.cpio.gz");
    build_initramfs(spec)?.write_gz(&initrd)?;
    let append = format!(
        "console=ttyS0 panic=-1 rdinit=/init loglevel=4 {}",
        spec.append
    );
    let start = Instant::now();
    let mut qemu = process(&spec.qemu);
    qemu.args(["-accel", "tcg", "-m"])
        .arg(spec.memory_mib.to_string())
        .args([
            "-smp",
            "1",
            "-nographic",
            "-no-reboot",
            "-monitor",
            "none",
            "-serial",
            "stdio",
            "-display",
            "none",
        ])
        .arg("-kernel")
        .arg(&spec.kernel)
        .arg("-initrd")
        .arg(&initrd)
        .arg("-append")
        .arg(append.trim());
    let mut child = qemu
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| qemu.spawn_error(e))?;
    let console = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut log = match &spec.log {
        Some(p) => {
            Some(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => None,
    };
    let mut stdout = child.stdout.take().context("qemu stdout")?;
    let sink = Arc::clone(&console);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(l) = log.as_mut() {
                        let _ = l.write_all(&buf[..n]);
                    }
                    if let Ok(mut c) = sink.lock() {
                        c.extend_from_slice(&buf[..n]);
                    }
                }
            }
        }
    });
    let mut stderr = child.stderr.take().context("qemu stderr")?;
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut timed_out = false;
    loop {
        if child.try_wait().context("waiting for qemu")?.is_some() {
            break;
        }
        if start.elapsed() > spec.timeout {
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = reader.join();
    let qemu_err = err_reader.join().unwrap_or_default();
    let bytes = console.lock().map(|c| c.clone()).unwrap_or_default();
    let mut console = String::from_utf8_lossy(&bytes).into_owned();
    if !qemu_err.trim().is_empty() {
        console.push_str("\n[qemu stderr] ");
        console.push_str(qemu_err.trim());
        console.push('\n');
    }
    let results = parse_results(&console);
    let script_exit = results.get("script_exit").and_then(|v| v.parse().ok());
    Ok(QemuRun {
        console,
        results,
        timed_out,
        script_exit,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_result_lines() {
        let r = parse_results("noise\r\nKHOTFIX-RESULT a=1\r\n[  1.2] KHOTFIX-RESULT b=x y\nKHOTFIX-RESULT a=2\nKHOTFIX-RESULT bad key=3\n");
        assert_eq!(r.get("a").map(String::as_str), Some("2"));
        assert_eq!(r.get("b").map(String::as_str), Some("x y"));
        assert!(!r.contains_key("bad key"));
    }

    #[test]
    fn module_names() {
        assert_eq!(
            module_name_of("kernel/net/netfilter/ipvs/ip_vs.ko"),
            "ip_vs"
        );
        assert_eq!(module_name_of("kernel/lib/libcrc32c.ko.xz"), "libcrc32c");
        assert_eq!(module_name_of("x/nf-conntrack.ko.zst"), "nf_conntrack");
    }

    #[test]
    fn dependency_order() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("modules.dep"),
            "a/top.ko: a/mid.ko a/base.ko\na/mid.ko: a/base.ko\na/base.ko:\nc/alg_intel.ko:\nc/alg_generic.ko:\n",
        )
        .unwrap();
        std::fs::write(d.path().join("modules.softdep"), "softdep base pre: alg\n").unwrap();
        std::fs::write(
            d.path().join("modules.alias"),
            "alias alg alg_intel\nalias alg alg_generic\n",
        )
        .unwrap();
        let o = module_load_order(d.path(), &["top".into()]).unwrap();
        assert_eq!(
            o,
            vec!["c/alg_generic.ko", "a/base.ko", "a/mid.ko", "a/top.ko"]
        );
        assert!(module_load_order(d.path(), &["nope".into()]).is_err());
    }

    #[test]
    fn cpio_is_readable_by_cpio_tool() {
        let mut fs = Initramfs::default();
        fs.file("/a/b.txt", b"hello".to_vec(), 0o644).unwrap();
        fs.symlink("/a/l", "b.txt").unwrap();
        assert!(fs.file("/a/../x", vec![], 0o644).is_err());
        let data = fs.to_cpio();
        assert_eq!(data.len() % 512, 0);
        let list = process("cpio")
            .args(["-t", "--quiet"])
            .stdin(data)
            .stdout_string()
            .expect("GNU cpio lists the archive");
        assert!(list.lines().any(|l| l == "a/b.txt"), "{list}");
        assert!(list.lines().any(|l| l == "a/l"), "{list}");
    }
}
