//! Issue 16, items 9, 12 and 15: how `node check`, `node apply` and the
//! generated script treat the host's files under `--root`.
//!
//! * They never write under the root (rpm creates a database, or `-shm` and
//!   `-wal` files, even for `rpm -q`): the tree is identical before and after.
//! * Every read is bounded and confined: endless, huge, FIFO or device files,
//!   and links leading outside the root, give one short error line (exit 2),
//!   never a hang or an out-of-memory death; values are echoed cut and escaped.
//! * Where the two implementations used to differ (invalid UTF-8 in /proc
//!   files, no package manager in a dry run), they give the same answer.

mod support;

use support::node_bins;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::node::RECIPE;
const CT4: &str = "/sys/fs/bpf/tc/globals/cilium_ct4_global";
const MODULE: &str = "kpatch_22519882";
const AL8: &str = "5.10.134-18.al8.x86_64";

fn write(root: &Path, host: &str, bytes: &[u8]) {
    let p = root.join(host.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn symlink(root: &Path, host: &str, target: &str) {
    let p = root.join(host.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&p);
    std::os::unix::fs::symlink(target, p).unwrap();
}

/// An al8 host inside the range, with the cilium map: needs the hotfix.
fn al8_root() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    write(
        t.path(),
        "/proc/sys/kernel/osrelease",
        format!("{AL8}\n").as_bytes(),
    );
    write(t.path(), "/proc/modules", b"ext4 1003520 1 - Live 0x0\n");
    write(t.path(), CT4, b"");
    t
}

fn script() -> &'static Path {
    static S: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    let (_, p) = S.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("hotfix.sh");
        support::node::script(RECIPE, &p);
        (d, p)
    });
    p
}

/// Run with a generous limit: a hang is a failure, not a stuck test.
fn run_bounded(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("{cmd:?} did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn to_run(o: Output) -> Run {
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// `sub --recipe RECIPE --root ROOT` with both binaries, bounded; they must agree.
fn node_bounded(sub: &str, root: &Path) -> Run {
    let [a, b] = node_bins::node_commands().map(|mut c| {
        c.args([sub, "--recipe", RECIPE, "--root"]).arg(root);
        run_bounded(c)
    });
    node_bins::assert_agree(&a, &b);
    to_run(a)
}

fn check(root: &Path) -> Run {
    node_bounded("check", root)
}

fn apply_dry(root: &Path) -> Run {
    node_bounded("apply", root)
}

fn run_script(root: &Path) -> Run {
    let mut c = Command::new("dash");
    c.arg(script()).env("KHOTFIX_ROOT", root);
    to_run(run_bounded(c))
}

/// The verdict line of a dry run (its last line, without `dry run: `).
fn verdict(stdout: &str) -> &str {
    let last = stdout.lines().last().unwrap_or_default();
    last.strip_prefix("dry run: ").unwrap_or(last)
}

/// `node check` and the script agree: exit code, and the verdict line.
fn agree(root: &Path) -> (Run, Run) {
    let c = check(root);
    let s = run_script(root);
    assert_eq!(
        (c.code, verdict(&c.stdout)),
        (s.code, verdict(&s.stdout)),
        "check: {}{}\nscript: {}{}",
        c.stdout,
        c.stderr,
        s.stdout,
        s.stderr
    );
    (c, s)
}

/// An error: exit 2, one short line on stderr naming `what`, nothing on stdout.
fn one_error_line(r: &Run, what: &str) {
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.starts_with("khotfix: error: "), "{}", r.stderr);
    assert!(
        r.stderr.len() < 400,
        "error line of {} bytes",
        r.stderr.len()
    );
    assert!(r.stderr.contains(what), "{what} not in {}", r.stderr);
}

// ---- item 9: nothing is written under the root ----------------------------

/// Names, types, sizes, modes and mtimes of everything under `root`.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, u64, i64, i64)> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            (
                e.path().strip_prefix(root).unwrap().to_path_buf(),
                (m.mode(), m.size(), m.mtime(), m.mtime_nsec()),
            )
        })
        .collect()
}

fn rpm(args: &[&str]) {
    let st = Command::new("rpm").args(args).status().expect("rpm");
    assert!(st.success(), "rpm {args:?}");
}

#[test]
fn check_apply_and_script_never_write_under_the_root() {
    let empty_db = al8_root();
    std::fs::create_dir_all(empty_db.path().join("var/lib/rpm")).unwrap();
    // A real (empty) sqlite database, rpm's own files removed afterwards,
    // as on a host whose rpm last closed cleanly.
    let sqlite = al8_root();
    let dbdir = sqlite.path().join("usr/lib/sysimage/rpm");
    std::fs::create_dir_all(&dbdir).unwrap();
    rpm(&["--dbpath", dbdir.to_str().unwrap(), "--initdb"]);
    for f in ["rpmdb.sqlite-shm", "rpmdb.sqlite-wal"] {
        let _ = std::fs::remove_file(dbdir.join(f));
    }
    // Fedora's layout: /var/lib/rpm a relative link to the sysimage one.
    symlink(sqlite.path(), "/var/lib/rpm", "../../usr/lib/sysimage/rpm");
    assert!(dbdir.join("rpmdb.sqlite").exists());

    for root in [empty_db.path(), sqlite.path()] {
        // Directory mtimes only change when something is created: wait so a
        // write in the same clock tick would still show.
        let before = snapshot(root);
        std::thread::sleep(Duration::from_millis(20));
        let (c, s) = agree(root);
        assert_eq!(c.code, 1, "{}{}", c.stdout, c.stderr);
        let a = apply_dry(root);
        assert_eq!(a.code, 1, "{}{}", a.stdout, a.stderr);
        assert_eq!(s.code, 1);
        assert_eq!(
            snapshot(root),
            before,
            "something was written under {}",
            root.display()
        );
    }
    // The database was really queried (on the copy), not skipped.
    let out = node_bins::both()
        .args(["check", "--json", "--recipe", RECIPE, "--root"])
        .arg(sqlite.path())
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["evidence"]["package_installed"], false, "{j}");
    // And without database files it is not queried at all.
    let out = node_bins::both()
        .args(["check", "--json", "--recipe", RECIPE, "--root"])
        .arg(empty_db.path())
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        j["evidence"]["package_installed"],
        serde_json::Value::Null,
        "{j}"
    );
}

// ---- item 12: bounded, confined reads -------------------------------------

/// A sparse file of `len` bytes: huge to read, free to make.
fn sparse(root: &Path, host: &str, len: u64) {
    write(root, host, b"");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join(host.trim_start_matches('/')))
        .unwrap();
    f.set_len(len).unwrap();
}

#[test]
fn huge_host_files_are_refused_after_a_bounded_read() {
    const GIB: u64 = 1 << 30;
    for (host, what) in [
        (
            "/proc/sys/kernel/osrelease",
            "osrelease: larger than 4096 bytes",
        ),
        ("/proc/modules", "modules: larger than 1048576 bytes"),
        (
            "/sys/kernel/livepatch/kpatch_22519882/enabled",
            "enabled: larger than 4096 bytes",
        ),
        (
            "/sys/kernel/livepatch/kpatch_22519882/transition",
            "transition: larger than 4096 bytes",
        ),
    ] {
        let t = al8_root();
        if host.contains("livepatch") {
            write(
                t.path(),
                &format!("/sys/kernel/livepatch/{MODULE}/enabled"),
                b"1\n",
            );
            write(
                t.path(),
                &format!("/sys/kernel/livepatch/{MODULE}/transition"),
                b"0\n",
            );
        }
        sparse(t.path(), host, 8 * GIB);
        let (c, s) = agree(t.path());
        one_error_line(&c, what);
        one_error_line(&s, what);
    }
}

#[test]
fn devices_fifos_and_endless_files_are_not_read() {
    // /dev/zero inside the root (a link to the machine's /dev/zero would be
    // resolved inside the root, as in a chroot).
    let t = al8_root();
    let dev = t.path().join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    let made = Command::new("mknod")
        .arg(dev.join("zero"))
        .args(["c", "1", "5"])
        .status()
        .is_ok_and(|s| s.success());
    for host in ["/proc/modules", "/proc/sys/kernel/osrelease"] {
        let t = al8_root();
        if made {
            std::fs::create_dir_all(t.path().join("dev")).unwrap();
            Command::new("mknod")
                .arg(t.path().join("dev/zero"))
                .args(["c", "1", "5"])
                .status()
                .unwrap();
            symlink(t.path(), host, "/dev/zero");
            let (c, s) = agree(t.path());
            one_error_line(&c, "not a regular file");
            one_error_line(&s, "not a regular file");
        } else {
            println!("skipped: the device case (mknod not permitted here)");
        }
        // A FIFO nobody writes to: opening it to read would block forever.
        let p = t.path().join(host.trim_start_matches('/'));
        let _ = std::fs::remove_file(&p);
        let st = Command::new("mkfifo").arg(&p).status().unwrap();
        assert!(st.success());
        let (c, s) = agree(t.path());
        one_error_line(&c, "not a regular file");
        one_error_line(&s, "not a regular file");
    }
    // The machine's /dev/zero through a link: resolved inside the root,
    // where there is none: osrelease is missing.
    let t = al8_root();
    symlink(t.path(), "/proc/sys/kernel/osrelease", "/dev/zero");
    let (c, s) = agree(t.path());
    one_error_line(&c, "osrelease: no such file");
    one_error_line(&s, "osrelease: no such file");
}

#[test]
fn links_are_followed_only_inside_the_root() {
    // Climbing out with '..' is refused.
    let t = al8_root();
    symlink(
        t.path(),
        "/proc/modules",
        "../../../../../../../../proc/modules",
    );
    let (c, s) = agree(t.path());
    one_error_line(&c, "leads outside the root");
    one_error_line(&s, "leads outside the root");
    // An absolute link starts again at the root: the required path points at
    // /etc/passwd, which this machine has and the root does not.
    let t = al8_root();
    symlink(t.path(), CT4, "/etc/passwd");
    let alt = "/.lifsea/rootfs/sys/fs/bpf/tc/globals/cilium_ct4_global";
    symlink(t.path(), alt, "/etc/passwd");
    let (c, _) = agree(t.path());
    assert_eq!(c.code, 0);
    assert!(
        c.stdout
            .starts_with("not-affected: none of the required paths exist"),
        "{}",
        c.stdout
    );
    write(t.path(), "/etc/passwd", b"root:x:0:0::/root:/bin/sh\n");
    let (c, _) = agree(t.path());
    assert_eq!(c.code, 1, "{}", c.stdout);
    // A loop of links.
    let t = al8_root();
    symlink(t.path(), "/proc/modules", "/proc/modules2");
    symlink(t.path(), "/proc/modules2", "modules");
    let (c, s) = agree(t.path());
    one_error_line(&c, "more than 40 symbolic links");
    one_error_line(&s, "more than 40 symbolic links");
    // Relative links inside the root work (merged /usr, Fedora's rpm dir).
    let t = al8_root();
    write(t.path(), "/run/osrelease", format!("{AL8}\n").as_bytes());
    symlink(
        t.path(),
        "/proc/sys/kernel/osrelease",
        "../../../run/./osrelease",
    );
    let (c, _) = agree(t.path());
    assert_eq!(c.code, 1, "{}{}", c.stdout, c.stderr);
}

#[test]
fn echoed_host_values_are_cut_and_escaped() {
    // A 100 MB osrelease is refused by size; a 4000-character one that fits
    // is echoed cut to 80 characters.
    let t = al8_root();
    sparse(t.path(), "/proc/sys/kernel/osrelease", 100 << 20);
    let (c, s) = agree(t.path());
    one_error_line(&c, "larger than 4096 bytes");
    one_error_line(&s, "larger than 4096 bytes");
    let t = al8_root();
    write(
        t.path(),
        "/proc/sys/kernel/osrelease",
        "5".repeat(4000).as_bytes(),
    );
    let (c, s) = agree(t.path());
    one_error_line(&c, "must be 1 to 128 characters");
    one_error_line(&s, "must be 1 to 128 characters");
    assert!(
        c.stderr.contains(&format!("\"{}…\"", "5".repeat(80))),
        "{}",
        c.stderr
    );
    // Terminal escapes and invalid UTF-8 are not echoed raw.
    let t = al8_root();
    write(
        t.path(),
        "/proc/sys/kernel/osrelease",
        b"5.10.134-18\x1b[2J\xff\xfe\x00.al8",
    );
    let (c, s) = agree(t.path());
    one_error_line(&c, "invalid kernel release");
    one_error_line(&s, "invalid kernel release");
    for r in [&c, &s] {
        assert!(
            !r.stderr.contains('\u{1b}') && !r.stderr.contains('\0'),
            "{:?}",
            r.stderr
        );
    }
}

/// The apply dry run reads the reference module named by modules.dep: an
/// entry climbing out of the root is refused instead of read (it used to be
/// read from the machine and reported "vermagic checked").
#[test]
fn modules_dep_entries_stay_inside_the_root() {
    let rel = khotfix::verify::qemu::debian_kernel_abi().unwrap();
    let ko = format!("/lib/modules/{rel}/kernel/net/netfilter/ipvs/ip_vs.ko");
    if !Path::new(&ko).exists() {
        panic!("{ko} missing: install linux-image-amd64");
    }
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("deb.toml");
    let vr = rel.trim_end_matches("-amd64");
    std::fs::write(
        &recipe,
        format!(
            "[hotfix]\nid = 3\nname = \"ipvs-estimation-timer\"\nsummary = \"ip_vs\"\ndescription = \"test\"\nversion = \"1.0\"\nbackend = \"kbuild\"\n\n\
             [[target]]\nname = \"debian12\"\ndistro = \"debian12\"\nkernels = [\"{rel}\"]\nmodule_source = \"ipvs-livepatch\"\n\n\
             [node]\nflavors = [\"debian\"]\nmodule = \"ip_vs\"\nkernels = [\"{vr}\"]\n"
        ),
    )
    .unwrap();
    let run = |root: &Path| {
        let out = node_bins::both()
            .args(["apply", "--recipe"])
            .arg(&recipe)
            .arg("--root")
            .arg(root)
            .args(["--ko", &ko])
            .output()
            .unwrap();
        to_run(out)
    };
    let t = tempfile::tempdir().unwrap();
    write(
        t.path(),
        "/proc/sys/kernel/osrelease",
        format!("{rel}\n").as_bytes(),
    );
    write(t.path(), "/proc/modules", b"");
    let escape = format!("../../../../../../../..{ko}");
    write(
        t.path(),
        &format!("/lib/modules/{rel}/modules.dep"),
        format!("{escape}: kernel/x.ko\n").as_bytes(),
    );
    let r = run(t.path());
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("vermagic checked"), "{}", r.stdout);
    assert!(
        r.stderr.contains("leaves the modules directory"),
        "{}",
        r.stderr
    );
    // A link in the modules tree that climbs out is refused too.
    write(
        t.path(),
        &format!("/lib/modules/{rel}/modules.dep"),
        b"kernel/ip_vs.ko:\n",
    );
    symlink(
        t.path(),
        &format!("/lib/modules/{rel}/kernel/ip_vs.ko"),
        &escape,
    );
    let r = run(t.path());
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("leads outside the root"), "{}", r.stderr);
    // The same module copied inside the root is read and compared: the
    // vermagic matches, and the module is refused later for what it is.
    let inside = t.path().join(format!("lib/modules/{rel}/kernel/ip_vs.ko"));
    std::fs::remove_file(&inside).unwrap();
    std::fs::copy(&ko, &inside).unwrap();
    let r = run(t.path());
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("not a livepatch module"), "{}", r.stderr);
}

// ---- item 15: one answer where check and script differed -------------------

#[test]
fn invalid_utf8_in_proc_files_gives_the_same_answer() {
    let cases: &[(&str, &[u8], i32)] = &[
        // /proc/modules: bytes around the module's line do not matter.
        (
            "/proc/modules",
            b"\xff\xfe bad 1 - Live\nkpatch_22519882 16384 1 - Live 0x0\n",
            0,
        ),
        (
            "/proc/modules",
            b"\xff\xfe\x00kpatch_22519882 16384 1 - Live 0x0",
            0,
        ),
        ("/proc/modules", b"x\xffkpatch_22519882 16384\n", 1),
        ("/proc/modules", b"\xc3\x28\n\x00\x00\n", 1),
    ];
    for (host, bytes, code) in cases {
        let t = al8_root();
        write(t.path(), host, bytes);
        let (c, _) = agree(t.path());
        assert_eq!(c.code, *code, "{bytes:?}: {}{}", c.stdout, c.stderr);
    }
    // Livepatch flags: exactly "1" or "1\n" is true.
    for (enabled, transition, code) in [
        (&b"1\n"[..], &b"0\n"[..], 0),
        (b"1", b"1", 0),
        (b"\xff1\n", b"0\n", 1),
        (b"1\xff", b"0\n", 1),
        (b"1\x00", b"0", 1),
        (b"1\n", b"1\xff", 0),
        (b" 1\n", b"0\n", 1),
    ] {
        let t = al8_root();
        write(
            t.path(),
            &format!("/sys/kernel/livepatch/{MODULE}/enabled"),
            enabled,
        );
        write(
            t.path(),
            &format!("/sys/kernel/livepatch/{MODULE}/transition"),
            transition,
        );
        let (c, _) = agree(t.path());
        assert_eq!(
            c.code, code,
            "{enabled:?} {transition:?}: {}{}",
            c.stdout, c.stderr
        );
    }
    // A livepatch directory without its enabled file: disabled, in both.
    let t = al8_root();
    std::fs::create_dir_all(t.path().join(format!("sys/kernel/livepatch/{MODULE}"))).unwrap();
    let (c, _) = agree(t.path());
    assert!(c.stdout.contains("is loaded but disabled"), "{}", c.stdout);
    // osrelease with invalid UTF-8 or NUL: an error in both.
    for bad in [
        &b"5.10.134-18.al8.x86_64\xff"[..],
        b"5.10.134-18.al8\x00.x86_64",
        b"\xef\xbb\xbf5.10.134-18.al8.x86_64",
    ] {
        let t = al8_root();
        write(t.path(), "/proc/sys/kernel/osrelease", bad);
        let (c, s) = agree(t.path());
        one_error_line(&c, "invalid kernel release");
        one_error_line(&s, "invalid kernel release");
    }
}

#[test]
fn dry_run_without_package_manager_gives_the_same_answer() {
    let t = al8_root();
    let a = apply_dry(t.path());
    let s = run_script(t.path());
    assert_eq!(a.code, 1, "{}{}", a.stdout, a.stderr);
    assert_eq!(s.code, 1, "{}{}", s.stdout, s.stderr);
    let a_lines: Vec<&str> = a.stdout.lines().collect();
    let s_lines: Vec<&str> = s.stdout.lines().collect();
    assert_eq!(a_lines.len(), 3, "{}", a.stdout);
    assert_eq!(
        a_lines[..2],
        s_lines[..2],
        "apply:\n{}script:\n{}",
        a.stdout,
        s.stdout
    );
    assert!(a_lines[0].starts_with("would fail: neither dnf nor yum"));
    assert_eq!(verdict(&s.stdout), check(t.path()).stdout.trim_end());
}

/// On a real host, procfs's `self` links name the reader: `/proc/net` is a
/// link to `self/net`. Both implementations resolve them for themselves (the
/// script used to ask `readlink`, whose own pid was gone a moment later, and
/// found no `/proc/net/...`: caught by the qemu test).
#[test]
fn proc_self_links_resolve_on_the_real_host() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(RECIPE).unwrap();
    let head = &base[..base.find("[node]").unwrap()];
    for path in [
        "/proc/net/dev",
        "/proc/self/status",
        "/proc/thread-self/status",
    ] {
        let recipe = dir.path().join("proc.toml");
        std::fs::write(
            &recipe,
            format!("{head}[node]\nrequired_paths = [\"{path}\"]\nflavors = [\"al8\"]\nmodule = \"{MODULE}\"\nranges = [{{ from = \"5.10.134-15\", to = \"5.10.134-19.1\" }}]\n"),
        )
        .unwrap();
        let c = to_run(
            node_bins::both()
                .args(["check", "--root", "/", "--recipe"])
                .arg(&recipe)
                .output()
                .unwrap(),
        );
        let script = dir.path().join("proc.sh");
        support::node::script(&recipe, &script);
        let s = to_run(
            Command::new("dash")
                .arg(&script)
                .args(["-r", "/"])
                .output()
                .unwrap(),
        );
        assert_eq!(
            (c.code, verdict(&c.stdout)),
            (s.code, verdict(&s.stdout)),
            "{path}: {}{}",
            c.stderr,
            s.stderr
        );
        // Found: the check goes on to the kernel (which this machine's may
        // not even parse, e.g. a VM's "6.18.44-fc-v1045": then both fail).
        for r in [&c, &s] {
            assert!(
                !r.stdout.contains("none of the required paths"),
                "{path}: {}",
                r.stdout
            );
            assert!(
                r.stdout.contains("not a flavor") || r.stderr.contains("osrelease"),
                "{path}: {}{}",
                r.stdout,
                r.stderr
            );
        }
    }
}
