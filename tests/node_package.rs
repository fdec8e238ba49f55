//! The `khotfix-node` RPM as a host meets it: `khotfix node package` builds
//! and signs it, `khotfix publish` puts it into the signed repository, real
//! dnf installs it into an installroot from the published `khotfix.repo`
//! (gpgcheck and repo_gpgcheck on), its unit files pass `systemd-analyze
//! verify`, and the installed binary's periodic run writes metrics that the
//! Prometheus text-format parser of `prometheus_client` reads back.
//!
//! Stand-ins (named as such): the installroot has no systemd package (this
//! Debian machine has no al8 repository), so before `systemd-analyze verify
//! --root` this machine's own systemd unit files are copied into it, as an
//! installed systemd would provide them; the running kernel and
//! `/proc/modules` are files written into the installroot, which `run
//! --root` reads as the host.
//!
//! Tools: dnf, createrepo_c (through publish), rpm, systemd-analyze,
//! /usr/bin/python3 with python3-prometheus-client (.ci/packages.txt).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const RECIPE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/node/22519882.toml");
const KHOTFIX: &str = env!("CARGO_BIN_EXE_khotfix");
const KERNEL: &str = "5.10.134-18.al8.x86_64";

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(cmd: &mut Command) -> Output {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?} failed: {}", text(&o));
    o
}

fn write(root: &Path, host: &str, t: &str) {
    let p = root.join(host.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, t).unwrap();
}

/// Keys, the node RPM (of a stripped copy of the test build of
/// khotfix-node, to keep the payload small), and the published repository.
fn publish(work: &Path) -> PathBuf {
    let keys = work.join("keys");
    ok(Command::new(KHOTFIX)
        .args(["keys", "generate", "--bits", "2048"])
        .arg(&keys));
    let bin = work.join("khotfix-node");
    ok(Command::new("strip")
        .arg("-o")
        .arg(&bin)
        .arg(env!("CARGO_BIN_EXE_khotfix-node")));
    let rpms = work.join("rpms");
    let o = ok(Command::new(KHOTFIX)
        .args(["node", "package", "--recipe", RECIPE, "--distro", "alinux3"])
        .args(["--compression", "gzip", "--binary"])
        .arg(&bin)
        .arg("--pgp-key")
        .arg(keys.join("package-signing.secret.asc"))
        .arg("--out-dir")
        .arg(&rpms));
    let rpm = String::from_utf8_lossy(&o.stdout)
        .trim()
        .strip_prefix("wrote ")
        .expect("node package names the RPM it wrote")
        .to_string();
    assert!(
        rpm.contains("/khotfix-node-") && rpm.ends_with(".al8.x86_64.rpm"),
        "{rpm}"
    );
    let repo = work.join("repo");
    ok(Command::new(KHOTFIX)
        .args(["publish", "--repo"])
        .arg(&repo)
        .arg("--gpg-key")
        .arg(keys.join("package-signing.secret.asc"))
        .arg("--base-url")
        .arg(format!("file://{}", repo.display()))
        .arg(&rpm));
    repo
}

/// dnf into `root` with only the published al8 `khotfix.repo`.
fn dnf_install(work: &Path, repo: &Path, root: &Path, pkg: &str) -> Output {
    let reposdir = work.join("yum.repos.d");
    std::fs::create_dir_all(&reposdir).unwrap();
    std::fs::copy(repo.join("al8/khotfix.repo"), reposdir.join("khotfix.repo")).unwrap();
    Command::new("dnf")
        .args([
            "-y",
            "--releasever=1",
            "--disableplugin=*",
            "--setopt=skip_if_unavailable=False",
        ])
        .arg(format!("--setopt=reposdir={}", reposdir.display()))
        .arg(format!(
            "--setopt=cachedir={}",
            work.join("dnf-cache").display()
        ))
        .arg(format!("--installroot={}", root.display()))
        .args(["install", pkg])
        .output()
        .unwrap()
}

/// Parse Prometheus text with prometheus_client; (name, labels, value).
pub fn parse_metrics(metrics: &str) -> Vec<(String, serde_json::Value, f64)> {
    use std::io::Write;
    let mut child = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(
            "import sys, json\n\
             from prometheus_client.parser import text_string_to_metric_families\n\
             out = [[s.name, s.labels, s.value] for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]\n\
             print(json.dumps(out))\n",
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (with python3-prometheus-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "prometheus_client refused the metrics: {}\n{metrics}",
        text(&o)
    );
    let v: Vec<(String, serde_json::Value, f64)> = serde_json::from_slice(&o.stdout).unwrap();
    v
}

fn value(samples: &[(String, serde_json::Value, f64)], name: &str) -> f64 {
    let hits: Vec<f64> = samples
        .iter()
        .filter(|(n, l, _)| n == name && l["id"] == "22519882" && l["kernel"] == KERNEL)
        .map(|s| s.2)
        .collect();
    assert_eq!(hits.len(), 1, "{name}: {samples:?}");
    hits[0]
}

#[test]
fn dnf_installs_khotfix_node_from_the_published_repository() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let repo = publish(work);
    let root = work.join("host");
    let o = dnf_install(work, &repo, &root, "khotfix-node");
    assert!(o.status.success(), "dnf install khotfix-node: {}", text(&o));

    // Installed where the units expect it, and runnable.
    let bin = root.join("usr/bin/khotfix-node");
    let v = ok(Command::new(&bin).arg("--version"));
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("khotfix-node "));
    let installed =
        std::fs::read_to_string(root.join("etc/khotfix/recipes/22519882.toml")).unwrap();
    assert_eq!(installed, std::fs::read_to_string(RECIPE).unwrap());
    let conf = std::fs::read_to_string(root.join("etc/khotfix/node.conf")).unwrap();
    assert!(conf.contains("KHOTFIX_NODE_ARGS=\"--metrics "), "{conf}");
    // The recipes and node.conf are %config(noreplace).
    let qc = ok(Command::new("rpm")
        .arg(format!("--root={}", root.display()))
        .args(["-qc", "khotfix-node"]));
    let qc = String::from_utf8_lossy(&qc.stdout);
    for f in [
        "/etc/khotfix/node.conf",
        "/etc/khotfix/recipes/22519882.toml",
    ] {
        assert!(qc.lines().any(|l| l == f), "{f} not a config file: {qc}");
    }

    // systemd-analyze verify, with this machine's systemd units as the
    // stand-in for the host's systemd package (never overwriting ours).
    let units = root.join("usr/lib/systemd/system");
    let service = std::fs::read(units.join("khotfix-node.service")).unwrap();
    ok(Command::new("cp")
        .args(["-rn", "/usr/lib/systemd/system/."])
        .arg(&units));
    assert_eq!(
        std::fs::read(units.join("khotfix-node.service")).unwrap(),
        service
    );
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .args([
            "/usr/lib/systemd/system/khotfix-node.service",
            "/usr/lib/systemd/system/khotfix-node.timer",
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success() && text(&o).trim().is_empty(),
        "systemd-analyze verify: {}",
        text(&o)
    );

    // The periodic run on this "host": affected al8 kernel, hotfix not live.
    write(&root, "/proc/sys/kernel/osrelease", &format!("{KERNEL}\n"));
    write(&root, "/proc/modules", "ext4 1003520 1 - Live 0x0\n");
    write(&root, "/sys/fs/bpf/tc/globals/cilium_ct4_global", "");
    let metrics = root.join("var/lib/node_exporter/textfile_collector/khotfix.prom");
    let o = Command::new(&bin)
        .arg("run")
        .arg("--root")
        .arg(&root)
        .arg("--metrics")
        .arg(&metrics)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("/etc/khotfix/recipes/22519882.toml: needs-hotfix: kernel"),
        "{}",
        text(&o)
    );
    let samples = parse_metrics(&std::fs::read_to_string(&metrics).unwrap());
    assert_eq!(value(&samples, "khotfix_hotfix_needed"), 1.0);
    assert_eq!(value(&samples, "khotfix_hotfix_loaded"), 0.0);
    assert_eq!(value(&samples, "khotfix_node_unfixable"), 0.0);
    assert_eq!(value(&samples, "khotfix_hotfix_affected"), 1.0);

    // The hotfix goes live: the next run says so.
    write(
        &root,
        "/proc/modules",
        "kpatch_22519882 16384 1 - Live 0x0 (OEK)\n",
    );
    let o = Command::new(&bin)
        .arg("run")
        .arg("--root")
        .arg(&root)
        .arg("--metrics")
        .arg(&metrics)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let samples = parse_metrics(&std::fs::read_to_string(&metrics).unwrap());
    assert_eq!(value(&samples, "khotfix_hotfix_needed"), 0.0);
    assert_eq!(value(&samples, "khotfix_hotfix_loaded"), 1.0);
}
