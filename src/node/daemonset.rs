//! `khotfix node daemonset RECIPE`: Kubernetes objects that run the generated
//! node script on every node and publish the verdict as a node label
//! `khotfix.io/hotfix-<id>=not-affected|fixed|applying|needs-hotfix|unfixable|error`.
//!
//! Objects: a ServiceAccount, a ClusterRole allowing `get`/`patch` on nodes,
//! its ClusterRoleBinding, a ConfigMap holding the script, and the DaemonSet.
//! The host's `/` is mounted at `/host` (read-only unless applying, with
//! HostToContainer propagation so /proc and /sys come along); the script runs
//! with `-r /host`. With `--apply` the pod is privileged with hostPID (the
//! package manager runs through `chroot /host`, and its scriptlet loads the
//! module into the host kernel); without it the pod only reads.
//!
//! The manifest is built as JSON values and printed by a real YAML serializer,
//! `serde_norway`: the maintained fork of `serde_yaml` (archived by its author
//! in 2024), with the same API and libyaml's emitter; `serde_yml` was not
//! chosen (flagged unsound and unmaintained). A hand-written emitter used to
//! split literal blocks at `\n` only, so a message with U+2028 became new YAML
//! lines (issue 16). Recipe messages are refused before that anyway
//! ([`super::text`]); the serializer makes the manifest safe for any string,
//! and [`to_yaml_stream`] checks that the stream reads back as the objects.
//!
//! The pod reads only: its root file system and the host mount are read-only,
//! and `/tmp` is a small emptyDir, where the script copies the host's rpm
//! database to query it (rpm writes even for `rpm -q`).

use super::script;
use crate::recipe::Recipe;
use crate::util::validate;
use anyhow::{bail, Result};
use serde_json::{json, Value};

/// Options for the manifest.
#[derive(Debug, Clone)]
pub struct DaemonSetOptions {
    /// Run `-y` (install) as well as check.
    pub apply: bool,
    /// Container image: must have `sh`, `awk`, `chroot`, `kubectl`, `rpm` (to
    /// report an installed package) and the usual `head`, `od`, `tr`, `wc`,
    /// `readlink` and `mktemp` (coreutils or busybox).
    pub image: String,
    /// Namespace for the namespaced objects.
    pub namespace: String,
    /// Seconds between checks (the label is refreshed each time).
    pub interval_secs: u64,
}

impl Default for DaemonSetOptions {
    fn default() -> Self {
        DaemonSetOptions {
            apply: false,
            image: "khotfix-node-agent:latest".into(),
            namespace: "kube-system".into(),
            interval_secs: 3600,
        }
    }
}

/// The label key for a hotfix.
pub fn label_key(id: u64) -> String {
    format!("khotfix.io/hotfix-{id}")
}

/// The container's command: run the script, label the node, sleep, repeat.
/// No recipe text appears here (only the numeric id, via the environment).
const WRAPPER: &str = r#"set -u
while :; do
  out=$(sh /khotfix/hotfix.sh -r /host $KHOTFIX_FLAGS 2>&1)
  printf '%s\n' "$out"
  line=$(printf '%s\n' "$out" | tail -n 1)
  line=${line#applied: }
  line=${line#dry run: }
  verdict=${line%%:*}
  case $verdict in
    not-affected|fixed|applying|needs-hotfix|unfixable) ;;
    *) verdict=error ;;
  esac
  kubectl label node "$NODE_NAME" "$KHOTFIX_LABEL=$verdict" --overwrite
  sleep "$KHOTFIX_INTERVAL"
done
"#;

/// Build the objects as JSON values, in apply order.
pub fn objects(recipe: &Recipe, opts: &DaemonSetOptions) -> Result<Vec<Value>> {
    validate::identifier("namespace", &opts.namespace).map_err(anyhow::Error::msg)?;
    if opts.namespace.len() > 63
        || opts
            .namespace
            .chars()
            .any(|c| c.is_ascii_uppercase() || c == '_')
    {
        bail!(
            "namespace {:?} must be a DNS label (lowercase letters, digits, '-')",
            opts.namespace
        );
    }
    if opts.image.is_empty()
        || opts
            .image
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        bail!(
            "image {:?} must be a non-empty reference without spaces",
            opts.image
        );
    }
    if opts.interval_secs == 0 {
        bail!("interval must be at least 1 second");
    }
    let id = recipe.hotfix.id;
    let name = format!("khotfix-hotfix-{id}");
    let ns = opts.namespace.as_str();
    let labels =
        json!({ "app.kubernetes.io/name": "khotfix", "khotfix.io/hotfix": id.to_string() });
    let script = script::generate(recipe)?;
    let sa = json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": { "name": name, "namespace": ns, "labels": labels },
    });
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": { "name": name, "labels": labels },
        "rules": [ { "apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"] } ],
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": { "name": name, "labels": labels },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name },
        "subjects": [ { "kind": "ServiceAccount", "name": name, "namespace": ns } ],
    });
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": name, "namespace": ns, "labels": labels },
        "data": { "hotfix.sh": script },
    });
    let security = if opts.apply {
        json!({ "privileged": true })
    } else {
        json!({ "privileged": false, "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true })
    };
    let ds = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": { "name": name, "namespace": ns, "labels": labels },
        "spec": {
            "selector": { "matchLabels": labels },
            "updateStrategy": { "type": "RollingUpdate" },
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "serviceAccountName": name,
                    "hostPID": opts.apply,
                    "nodeSelector": { "kubernetes.io/os": "linux" },
                    "tolerations": [ { "operator": "Exists" } ],
                    "containers": [ {
                        "name": "khotfix",
                        "image": opts.image,
                        "command": ["/bin/sh", "-c", WRAPPER],
                        "env": [
                            { "name": "NODE_NAME", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } },
                            { "name": "KHOTFIX_LABEL", "value": label_key(id) },
                            { "name": "KHOTFIX_FLAGS", "value": if opts.apply { "-y" } else { "" } },
                            { "name": "KHOTFIX_INTERVAL", "value": opts.interval_secs.to_string() },
                        ],
                        "securityContext": security,
                        "resources": { "requests": { "cpu": "10m", "memory": "16Mi" }, "limits": { "memory": "128Mi" } },
                        "volumeMounts": [
                            { "name": "host", "mountPath": "/host", "readOnly": !opts.apply, "mountPropagation": "HostToContainer" },
                            { "name": "script", "mountPath": "/khotfix", "readOnly": true },
                            { "name": "tmp", "mountPath": "/tmp" },
                        ],
                    } ],
                    "volumes": [
                        { "name": "host", "hostPath": { "path": "/", "type": "Directory" } },
                        { "name": "script", "configMap": { "name": name, "defaultMode": 0o555 } },
                        { "name": "tmp", "emptyDir": { "sizeLimit": "1Gi" } },
                    ],
                },
            },
        },
    });
    Ok(vec![sa, role, binding, cm, ds])
}

/// The manifest as a multi-document YAML stream.
pub fn manifest(recipe: &Recipe, opts: &DaemonSetOptions) -> Result<String> {
    to_yaml_stream(&objects(recipe, opts)?)
}

/// Documents as a YAML stream: the one YAML writer ([`crate::util::yaml`]).
pub fn to_yaml_stream(docs: &[Value]) -> Result<String> {
    crate::util::yaml::stream(docs)
}
