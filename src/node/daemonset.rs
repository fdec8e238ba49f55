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
//! The manifest is built as a JSON value and printed as YAML by a small
//! emitter (strings double-quoted, or as literal blocks for multi-line text).

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
    /// Container image: must have `sh`, `awk`, `chroot` and `kubectl`.
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
                        ],
                    } ],
                    "volumes": [
                        { "name": "host", "hostPath": { "path": "/", "type": "Directory" } },
                        { "name": "script", "configMap": { "name": name, "defaultMode": 0o555 } },
                    ],
                },
            },
        },
    });
    Ok(vec![sa, role, binding, cm, ds])
}

/// The manifest as a multi-document YAML stream.
pub fn manifest(recipe: &Recipe, opts: &DaemonSetOptions) -> Result<String> {
    let mut out = String::new();
    for o in objects(recipe, opts)? {
        out.push_str("---\n");
        emit(&o, 0, &mut out);
    }
    Ok(out)
}

// ---- a small YAML emitter for JSON values ---------------------------------

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("null".into()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())),
        Value::Array(a) if a.is_empty() => Some("[]".into()),
        Value::Object(o) if o.is_empty() => Some("{}".into()),
        _ => None,
    }
}

/// A multi-line string that a literal block scalar reproduces exactly.
fn literal_block(s: &str) -> Option<&'static str> {
    let ok = s.contains('\n')
        && !s.starts_with([' ', '\t', '\n'])
        && s.chars().all(|c| c == '\n' || c == '\t' || !c.is_control())
        && !s.lines().any(|l| l.ends_with([' ', '\t']));
    if !ok {
        return None;
    }
    if s.ends_with("\n\n") {
        None
    } else if s.ends_with('\n') {
        Some("|")
    } else {
        Some("|-")
    }
}

fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '-' | '_'))
        && !k.starts_with(['-', '.'])
    {
        k.to_string()
    } else {
        serde_json::to_string(k).unwrap_or_default()
    }
}

fn emit_string_value(s: &str, indent: usize, out: &mut String) {
    match literal_block(s) {
        Some(style) => {
            out.push(' ');
            out.push_str(style);
            out.push('\n');
            let pad = " ".repeat(indent + 2);
            for line in s.lines() {
                if line.is_empty() {
                    out.push('\n');
                } else {
                    out.push_str(&pad);
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        None => {
            out.push(' ');
            out.push_str(&serde_json::to_string(s).unwrap_or_default());
            out.push('\n');
        }
    }
}

fn emit(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, val) in map {
                out.push_str(&pad);
                out.push_str(&key(k));
                out.push(':');
                match val {
                    Value::String(s) => emit_string_value(s, indent, out),
                    _ => match scalar(val) {
                        Some(s) => {
                            out.push(' ');
                            out.push_str(&s);
                            out.push('\n');
                        }
                        None => {
                            out.push('\n');
                            emit(val, indent + 2, out);
                        }
                    },
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        // First key on the dash line, the rest indented under it.
                        let mut sub = String::new();
                        emit(item, indent + 2, &mut sub);
                        out.push(' ');
                        out.push_str(&sub[indent + 2..]);
                    }
                    Value::String(s) => emit_string_value(s, indent, out),
                    _ => match scalar(item) {
                        Some(s) => {
                            out.push(' ');
                            out.push_str(&s);
                            out.push('\n');
                        }
                        None => {
                            out.push('\n');
                            emit(item, indent + 2, out);
                        }
                    },
                }
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&scalar(other).unwrap_or_default());
            out.push('\n');
        }
    }
}
