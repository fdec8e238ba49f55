//! `node check` and the generated `node script` against fake roots for every
//! case of seed 000's scripts: both must give the same verdict and exit code.

mod support;

use support::node_bins;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::node::RECIPE;
const CT4: &str = "/sys/fs/bpf/tc/globals/cilium_ct4_global";
const CT4_LIFSEA: &str = "/.lifsea/rootfs/sys/fs/bpf/tc/globals/cilium_ct4_global";
const MODULE: &str = "kpatch_22519882";

/// A fake host root.
struct FakeRoot {
    dir: tempfile::TempDir,
}

impl FakeRoot {
    fn new(osrelease: &str) -> Self {
        let r = FakeRoot {
            dir: tempfile::tempdir().unwrap(),
        };
        r.write("/proc/sys/kernel/osrelease", &format!("{osrelease}\n"));
        r.write(
            "/proc/modules",
            "ext4 1003520 1 - Live 0x0000000000000000\nip_vs 192512 0 - Live 0x0000000000000000\n",
        );
        r
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn write(&self, host: &str, text: &str) {
        let p = self.dir.path().join(host.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    fn with(self, host: &str) -> Self {
        self.write(host, "");
        self
    }
    fn module_loaded(self) -> Self {
        let old = std::fs::read_to_string(self.path().join("proc/modules")).unwrap();
        self.write(
            "/proc/modules",
            &format!("{old}{MODULE} 16384 1 - Live 0x0000000000000000 (OEK)\n"),
        );
        self
    }
    fn livepatch(self, enabled: &str, transition: &str) -> Self {
        self.write(
            &format!("/sys/kernel/livepatch/{MODULE}/enabled"),
            &format!("{enabled}\n"),
        );
        self.write(
            &format!("/sys/kernel/livepatch/{MODULE}/transition"),
            &format!("{transition}\n"),
        );
        self.module_loaded()
    }
}

struct Outcome {
    code: i32,
    line: String,
}

fn check(root: &Path) -> Outcome {
    let out = node_bins::both()
        .args(["check", "--recipe", RECIPE, "--root"])
        .arg(root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Outcome {
        code: out.status.code().unwrap(),
        line: stdout.trim_end().to_string(),
    }
}

fn check_json(root: &Path) -> Value {
    let out = node_bins::both()
        .args(["check", "--json", "--recipe", RECIPE, "--root"])
        .arg(root)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad json ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn script_file(recipe: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("hotfix.sh");
    support::node::script(recipe, &p);
    (d, p)
}

/// Run the script with dash in dry-run mode; the verdict is its last line.
fn run_script(script: &Path, root: &Path) -> Outcome {
    let out = Command::new("dash")
        .arg(script)
        .env("KHOTFIX_ROOT", root)
        .env_remove("KHOTFIX_TIMEOUT")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .last()
        .unwrap_or("")
        .trim_start_matches("dry run: ")
        .to_string();
    Outcome {
        code: out.status.code().unwrap(),
        line: last,
    }
}

/// Both implementations agree, and give `verdict` with `code`.
fn expect(root: &FakeRoot, verdict: &str, code: i32) -> String {
    let (_d, script) = script_file(RECIPE);
    let a = check(root.path());
    assert_eq!(a.code, code, "node check: {}", a.line);
    assert!(
        a.line.starts_with(&format!("{verdict}: ")),
        "node check said {:?}, want {verdict}",
        a.line
    );
    let b = run_script(&script, root.path());
    assert_eq!(
        b.code, a.code,
        "script exit differs; script said {:?}, check said {:?}",
        b.line, a.line
    );
    assert_eq!(b.line, a.line, "script and node check disagree");
    a.line
}

#[test]
fn al8_inside_the_range_needs_the_hotfix() {
    for (rel, pkg) in [
        (
            "5.10.134-15.al8.x86_64",
            "kernel-hotfix-22519882-5.10.134-15",
        ),
        (
            "5.10.134-18.al8.x86_64",
            "kernel-hotfix-22519882-5.10.134-18",
        ),
        (
            "5.10.134-19.1.al8.x86_64",
            "kernel-hotfix-22519882-5.10.134-19.1",
        ),
    ] {
        let root = FakeRoot::new(rel).with(CT4);
        let line = expect(&root, "needs-hotfix", 1);
        assert!(line.contains(pkg), "{line}");
        let j = check_json(root.path());
        assert_eq!(j["verdict"], "needs-hotfix");
        assert_eq!(j["package"], pkg);
        assert_eq!(j["flavor"], "al8");
        assert_eq!(j["kernel"], rel);
        assert_eq!(j["module"], MODULE);
        assert_eq!(j["exit_code"], 1);
        assert_eq!(j["evidence"]["required_path"], CT4);
        assert_eq!(j["evidence"]["in_range"], true);
        assert_eq!(j["evidence"]["module_loaded"], false);
    }
}

#[test]
fn al8_outside_the_range_is_not_affected() {
    for rel in [
        "5.10.134-19.2.al8.x86_64",
        "5.10.134-14.al8.x86_64",
        "5.10.134-14.9.al8.x86_64",
        "5.10.135-16.al8.x86_64",
    ] {
        let root = FakeRoot::new(rel).with(CT4);
        let line = expect(&root, "not-affected", 0);
        assert!(line.contains("not in the affected kernels"), "{line}");
    }
}

#[test]
fn lifsea8_is_unfixable_with_the_containeros_message() {
    let root = FakeRoot::new("5.10.134-18.0.1.lifsea8.x86_64").with(CT4);
    let line = expect(&root, "unfixable", 3);
    assert!(
        line.contains("upgrade to ContainerOS 3.5.1 or later"),
        "{line}"
    );
    let j = check_json(root.path());
    assert_eq!(j["flavor"], "lifsea8");
    assert_eq!(j["package"], Value::Null);
}

#[test]
fn release_is_parsed_in_full_unlike_the_seed_regex() {
    // The seed's regex reads 5.10.134-19.1.1 as 5.10.134-19.1 (in range); the
    // full release 19.1.1 sorts after 19.1, so it is outside the range.
    let root = FakeRoot::new("5.10.134-19.1.1.lifsea8.x86_64").with(CT4);
    expect(&root, "not-affected", 0);
}

#[test]
fn el8_and_debian_are_skipped() {
    for rel in [
        "4.18.0-348.7.1.el8_5.x86_64",
        "6.1.0-56-amd64",
        "5.10.134-18.an8.x86_64",
    ] {
        let root = FakeRoot::new(rel).with(CT4);
        let line = expect(&root, "not-affected", 0);
        assert!(
            line.contains("not a flavor this hotfix covers (al8, lifsea8)"),
            "{line}"
        );
    }
}

#[test]
fn missing_path_means_not_affected() {
    let root = FakeRoot::new("5.10.134-18.al8.x86_64");
    let line = expect(&root, "not-affected", 0);
    assert!(line.contains("none of the required paths exist"), "{line}");
}

#[test]
fn lifsea_rootfs_path_variant_counts() {
    let root = FakeRoot::new("5.10.134-18.al8.x86_64").with(CT4_LIFSEA);
    expect(&root, "needs-hotfix", 1);
    assert_eq!(
        check_json(root.path())["evidence"]["required_path"],
        CT4_LIFSEA
    );
    let root = FakeRoot::new("5.10.134-18.0.1.lifsea8.x86_64").with(CT4_LIFSEA);
    expect(&root, "unfixable", 3);
}

#[test]
fn module_already_loaded_is_fixed() {
    // A kpatch-core style module: in /proc/modules, no livepatch sysfs entry.
    let root = FakeRoot::new("5.10.134-18.al8.x86_64")
        .with(CT4)
        .module_loaded();
    expect(&root, "fixed", 0);
    // A livepatch that is enabled with its transition finished.
    let root = FakeRoot::new("5.10.134-18.al8.x86_64")
        .with(CT4)
        .livepatch("1", "0");
    expect(&root, "fixed", 0);
    let j = check_json(root.path());
    assert_eq!(j["evidence"]["livepatch_enabled"], "1");
    assert_eq!(j["evidence"]["livepatch_transition"], "0");
    // lifsea8 with the module loaded: nothing to do, as in the seed.
    let root = FakeRoot::new("5.10.134-18.0.1.lifsea8.x86_64")
        .with(CT4)
        .module_loaded();
    expect(&root, "fixed", 0);
}

#[test]
fn similar_module_names_do_not_count() {
    // The seed's `lsmod | grep kpatch_22519882` also matched kpatch_225198820.
    let root = FakeRoot::new("5.10.134-18.al8.x86_64").with(CT4);
    root.write("/proc/modules", "kpatch_225198820 16384 1 - Live 0x0\n");
    expect(&root, "needs-hotfix", 1);
}

#[test]
fn transition_still_running_is_applying() {
    let root = FakeRoot::new("5.10.134-18.al8.x86_64")
        .with(CT4)
        .livepatch("1", "1");
    let line = expect(&root, "applying", 0);
    assert!(line.contains("transition is still running"), "{line}");
}

#[test]
fn disabled_livepatch_needs_the_hotfix() {
    let root = FakeRoot::new("5.10.134-18.al8.x86_64")
        .with(CT4)
        .livepatch("0", "0");
    let line = expect(&root, "needs-hotfix", 1);
    assert!(line.contains("loaded but disabled"), "{line}");
}

/// Build a tiny noarch RPM named `name` with rpmbuild (the real tool).
fn build_rpm(name: &str) -> PathBuf {
    let top = tempfile::tempdir().unwrap().keep();
    let spec = top.join("p.spec");
    std::fs::write(
        &spec,
        format!("Name: {name}\nVersion: 1.0\nRelease: 1\nSummary: test\nLicense: MIT\nBuildArch: noarch\n%description\ntest\n%files\n"),
    )
    .unwrap();
    let ok = Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .args(["--define", "_build_id_links none", "-bb"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "rpmbuild: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    top.join(format!("RPMS/noarch/{name}-1.0-1.noarch.rpm"))
}

#[test]
fn package_state_is_read_from_the_rpm_database_under_root() {
    let root = FakeRoot::new("5.10.134-18.al8.x86_64").with(CT4);
    let rpm = |args: &[&str]| {
        let s = Command::new("rpm")
            .arg("--root")
            .arg(root.path())
            .args(["--dbpath", "/var/lib/rpm"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            s.status.success(),
            "rpm {args:?}: {}",
            String::from_utf8_lossy(&s.stderr)
        );
    };
    rpm(&["--initdb"]);
    let line = expect(&root, "needs-hotfix", 1);
    assert!(line.contains("is not live: install"), "{line}");
    assert_eq!(
        check_json(root.path())["evidence"]["package_installed"],
        false
    );
    // Installed (database only) but the module is not loaded.
    let pkg = build_rpm("kernel-hotfix-22519882-5.10.134-18");
    rpm(&["-i", "--justdb", "--nodeps", pkg.to_str().unwrap()]);
    let line = expect(&root, "needs-hotfix", 1);
    assert!(
        line.contains("although kernel-hotfix-22519882-5.10.134-18 is installed"),
        "{line}"
    );
    assert_eq!(
        check_json(root.path())["evidence"]["package_installed"],
        true
    );
}

#[test]
fn unreadable_or_bad_kernel_release_is_an_error() {
    let (_d, script) = script_file(RECIPE);
    for rel in ["garbage", "5.10.134-18 al8", "5.10.134-$(id)", "5.10.134-"] {
        let root = FakeRoot::new(rel).with(CT4);
        let out = node_bins::both()
            .args(["check", "--recipe", RECIPE, "--root"])
            .arg(root.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{rel}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("khotfix: error: ") && err.trim_end().lines().count() == 1,
            "{err}"
        );
        assert_eq!(run_script(&script, root.path()).code, 2, "script on {rel}");
    }
    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(
        empty
            .path()
            .join(CT4.trim_start_matches('/'))
            .parent()
            .unwrap(),
    )
    .unwrap();
    std::fs::write(empty.path().join(CT4.trim_start_matches('/')), "").unwrap();
    assert_eq!(check(empty.path()).code, 2);
    let j = node_bins::both()
        .args(["check", "--json", "--recipe", RECIPE, "--root"])
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(j.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(v["verdict"], "error");
    assert!(v["reason"].as_str().unwrap().contains("osrelease"), "{v}");
    assert_eq!(run_script(&script, empty.path()).code, 2);
}

#[test]
fn recipe_defaults_to_the_one_installed_under_root() {
    let root = FakeRoot::new("5.10.134-18.al8.x86_64").with(CT4);
    let out = node_bins::both()
        .args(["check", "--root"])
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no recipe installed in"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    root.write(
        "/etc/khotfix/recipes/22519882.toml",
        &std::fs::read_to_string(RECIPE).unwrap(),
    );
    let out = node_bins::both()
        .args(["check", "--root"])
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn script_takes_the_root_as_an_option_too() {
    let (_d, script) = script_file(RECIPE);
    let root = FakeRoot::new("5.10.134-18.0.1.lifsea8.x86_64").with(CT4);
    let out = Command::new("dash")
        .arg(&script)
        .arg("-r")
        .arg(format!("{}/", root.path().display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn generated_script_passes_shellcheck() {
    let (_d, script) = script_file(RECIPE);
    let out = Command::new("shellcheck")
        .args(["-s", "sh"])
        .arg(&script)
        .output()
        .expect("shellcheck is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The script's awk rpmvercmp equals the Rust one, under gawk, mawk and
/// busybox awk, on hand-picked and generated pairs.
#[test]
fn awk_vercmp_matches_rust_rpmvercmp() {
    use khotfix::kernel::rpmvercmp;
    let mut pairs: Vec<(String, String)> = [
        ("18", "19.1"),
        ("19.1", "19.1"),
        ("19.1.1", "19.1"),
        ("19.2", "19.1"),
        ("14", "15"),
        ("1.0", "1.0.0"),
        ("1a", "1"),
        ("a", "1"),
        ("1.01", "1.1"),
        ("1.001", "1.0001"),
        ("0", "00"),
        ("1~rc1", "1"),
        ("1~rc1", "1~rc2"),
        ("1^git", "1"),
        ("1^git", "1.1"),
        ("el7", "el8"),
        ("2.0.1a", "2.0.1"),
        ("10", "9"),
        ("abc", "abd"),
        ("1_2", "1.2"),
        ("99999999999999999999", "99999999999999999998"),
        ("1062.9.1", "1062.12.1"),
        ("18.0.1", "18"),
        ("", "1"),
        ("A", "a"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let atoms = [
        "0", "1", "01", "9", "10", "a", "b", "rc", "Z", ".", "_", "+", "~", "^",
    ];
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..400 {
        let mut mk = || {
            (0..(next() % 5 + 1))
                .map(|_| atoms[(next() % atoms.len() as u64) as usize])
                .collect::<String>()
        };
        let (a, b) = (mk(), mk());
        pairs.push((a, b));
    }
    let input: String = pairs.iter().map(|(a, b)| format!("{a}|{b}\n")).collect();
    let prog = format!(
        "{}\nBEGIN {{ while ((getline line) > 0) {{ split(line, p, \"|\"); print vercmp(p[1], p[2]) }} }}",
        khotfix::node::script::awk_program()
    );
    for awk in [vec!["gawk"], vec!["mawk"], vec!["busybox", "awk"]] {
        let mut cmd = Command::new(awk[0]);
        cmd.args(&awk[1..])
            .arg(&prog)
            .env("KHOTFIX_REL", "5.10.134-18.al8.x86_64")
            .env("LC_ALL", "C");
        let mut child = match cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(_) => continue,
        };
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        assert!(
            lines.next().unwrap_or("").starts_with("ok|"),
            "{awk:?}: {text}"
        );
        for ((a, b), got) in pairs.iter().zip(lines) {
            let want = match rpmvercmp(a, b) {
                std::cmp::Ordering::Less => "-1",
                std::cmp::Ordering::Equal => "0",
                std::cmp::Ordering::Greater => "1",
            };
            assert_eq!(got, want, "{awk:?}: vercmp({a:?}, {b:?})");
        }
    }
}

/// The awk kernel-release parser agrees with `KernelRelease::parse` on flavor,
/// version and release (and on refusing).
#[test]
fn awk_release_parser_matches_rust() {
    use khotfix::kernel::KernelRelease;
    let rels = [
        "5.10.134-18.al8.x86_64",
        "5.10.134-18.0.1.lifsea8.x86_64",
        "3.10.0-1062.9.1.el7.x86_64",
        "4.18.0-348.7.1.el8_5.x86_64",
        "6.1.0-56-amd64",
        "6.1.0-56-cloud-amd64",
        "6.1.0-13-686-pae",
        "5.10.134-19.1",
        "5.10.134",
        "x.y-1",
        "5.10.134-",
        "5.10.134-18..al8",
        "5-1",
        "5.10.134-al8",
        "6.1.0-56-foo",
        "5.14.0-70.13.1.el9_0.aarch64",
        "5.10.134-18.al8",
    ];
    for rel in rels {
        let out = Command::new("awk")
            .arg(khotfix::node::script::awk_program())
            .env("KHOTFIX_REL", rel)
            .env("KHOTFIX_RANGES", "")
            .env("KHOTFIX_KERNELS", "")
            .env("LC_ALL", "C")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        match KernelRelease::parse(rel) {
            Ok(k) => {
                let want = format!("ok|{rel}|{}|{}|{}|0", k.flavor.name(), k.version, k.release);
                assert_eq!(text, want, "{rel}");
            }
            Err(_) => assert!(text.starts_with("err|"), "{rel}: awk accepted {text}"),
        }
    }
}
