//! `node daemonset`: the manifest parses as YAML (PyYAML), holds the objects a
//! cluster needs, embeds exactly the `node script` output, and its container
//! command labels the node with the verdict (run here with a stand-in
//! `kubectl` that records its arguments: no cluster exists on this machine).

mod support;

use support::bin::khotfix;

use serde_json::Value;
use std::path::Path;
use std::process::Command;

use support::node::RECIPE;

/// Parse a YAML stream with PyYAML and return the documents as JSON.
fn yaml_docs(yaml: &str) -> Vec<Value> {
    support::yaml::pyyaml(yaml)
        .unwrap_or_else(|e| panic!("YAML did not parse: {e}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn manifest(extra: &[&str]) -> Vec<Value> {
    let out = khotfix()
        .args(["node", "daemonset", RECIPE])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    yaml_docs(&String::from_utf8_lossy(&out.stdout))
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn check_only_manifest() {
    let docs = manifest(&[]);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "DaemonSet"
        ]
    );
    let role = find(&docs, "ClusterRole");
    assert_eq!(role["rules"][0]["resources"][0], "nodes");
    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["get", "patch"])
    );
    let binding = find(&docs, "ClusterRoleBinding");
    assert_eq!(binding["subjects"][0]["name"], "khotfix-hotfix-22519882");
    assert_eq!(binding["subjects"][0]["namespace"], "kube-system");

    let script = khotfix().args(["node", "script", RECIPE]).output().unwrap();
    let cm = find(&docs, "ConfigMap");
    assert_eq!(
        cm["data"]["hotfix.sh"].as_str().unwrap(),
        String::from_utf8_lossy(&script.stdout),
        "ConfigMap must hold the script byte for byte"
    );

    let ds = find(&docs, "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(
        ds["spec"]["selector"]["matchLabels"],
        ds["spec"]["template"]["metadata"]["labels"]
    );
    assert_eq!(pod["hostPID"], false);
    assert_eq!(pod["serviceAccountName"], "khotfix-hotfix-22519882");
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["privileged"], false);
    let host = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "host")
        .unwrap();
    assert_eq!(host["mountPath"], "/host");
    assert_eq!(host["readOnly"], true);
    assert_eq!(host["mountPropagation"], "HostToContainer");
    assert_eq!(pod["volumes"][0]["hostPath"]["path"], "/");
    let env = c["env"].as_array().unwrap();
    let var = |n: &str| env.iter().find(|e| e["name"] == n).unwrap().clone();
    assert_eq!(var("KHOTFIX_LABEL")["value"], "khotfix.io/hotfix-22519882");
    assert_eq!(var("KHOTFIX_FLAGS")["value"], "");
    assert_eq!(
        var("NODE_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
}

#[test]
fn apply_manifest_is_privileged_with_host_pid() {
    let docs = manifest(&[
        "--apply",
        "--namespace",
        "khotfix",
        "--image",
        "registry.example/khotfix-tools:1",
    ]);
    let ds = find(&docs, "DaemonSet");
    assert_eq!(ds["metadata"]["namespace"], "khotfix");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "registry.example/khotfix-tools:1");
    assert_eq!(c["securityContext"]["privileged"], true);
    let env = c["env"].as_array().unwrap();
    assert!(env
        .iter()
        .any(|e| e["name"] == "KHOTFIX_FLAGS" && e["value"] == "-y"));
    let host = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "host")
        .unwrap();
    assert_eq!(host["readOnly"], false);
}

#[test]
fn bad_options_are_refused() {
    for args in [
        vec!["--namespace", "Kube_System"],
        vec!["--image", "a b"],
        vec!["--interval", "0"],
    ] {
        let out = khotfix()
            .args(["node", "daemonset", RECIPE])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
    }
}

fn write(root: &Path, p: &str, t: &str) {
    let f = root.join(p.trim_start_matches('/'));
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(f, t).unwrap();
}

/// Run the container command (paths moved into a temp dir) once per fake
/// root, with stand-ins for kubectl (records its arguments) and sleep (ends
/// the loop), and read back the label it set.
#[test]
fn container_command_labels_the_node_with_the_verdict() {
    use std::os::unix::fs::PermissionsExt;
    let docs = manifest(&[]);
    let c = &find(&docs, "DaemonSet")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["command"][0], "/bin/sh");
    let wrapper = c["command"][2].as_str().unwrap().to_string();
    let script = find(&docs, "ConfigMap")["data"]["hotfix.sh"]
        .as_str()
        .unwrap()
        .to_string();
    for (rel, path, want) in [
        ("5.10.134-18.al8.x86_64", true, "needs-hotfix"),
        ("5.10.134-18.0.1.lifsea8.x86_64", true, "unfixable"),
        ("5.10.134-19.2.al8.x86_64", true, "not-affected"),
        ("5.10.134-18.al8.x86_64", false, "not-affected"),
        ("garbage", true, "error"),
    ] {
        let t = tempfile::tempdir().unwrap();
        let host = t.path().join("host");
        write(&host, "/proc/sys/kernel/osrelease", &format!("{rel}\n"));
        write(&host, "/proc/modules", "");
        if path {
            write(&host, "/sys/fs/bpf/tc/globals/cilium_ct4_global", "");
        }
        write(t.path(), "/khotfix/hotfix.sh", &script);
        let bin = t.path().join("bin");
        let log = t.path().join("kubectl.log");
        write(
            &bin,
            "/kubectl",
            &format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >> {}\n", log.display()),
        );
        write(&bin, "/sleep", "#!/bin/sh\nkill -TERM $PPID\n");
        for f in ["kubectl", "sleep"] {
            std::fs::set_permissions(bin.join(f), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let cmd = wrapper
            .replace(
                "/khotfix/hotfix.sh",
                &t.path().join("khotfix/hotfix.sh").display().to_string(),
            )
            .replace("-r /host", &format!("-r {}", host.display()));
        assert_ne!(cmd, wrapper);
        let path_env = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let _ = Command::new("dash")
            .args(["-c", &cmd])
            .env("PATH", path_env)
            .env("NODE_NAME", "node-1")
            .env("KHOTFIX_LABEL", "khotfix.io/hotfix-22519882")
            .env("KHOTFIX_FLAGS", "")
            .env("KHOTFIX_INTERVAL", "5")
            .output()
            .unwrap();
        let got = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(
            got.trim(),
            format!("label node node-1 khotfix.io/hotfix-22519882={want} --overwrite"),
            "{rel}"
        );
    }
}
