//! `khotfix plan --format k8s`: a Kubernetes Indexed Job that builds one plan
//! job per completion index, plus a publish Job, as multi-document YAML.
//!
//! Each build pod runs `khotfix run RECIPES --job-index $(JOB_COMPLETION_INDEX)
//! --expect-plan DIGEST --out /shared/out` (the Job controller sets
//! `JOB_COMPLETION_INDEX`; Kubernetes expands `$(VAR)` in args, no shell).
//! `--expect-plan` makes a pod refuse to build when its own plan differs
//! from the one the manifest was made from (a new kernel appeared): an index
//! must mean the same job everywhere. Pods share a cache volume (mounted at
//! the khotfix cache dir) and an output volume; passing jobs leave their RPM
//! in `/shared/out/verified/<job-id>/`.
//!
//! The publish Job is created suspended: Kubernetes has no "run after that
//! Job" ordering, so it is resumed once the build Job has finished (see the
//! comment at the top of the output). It runs a fixed three-line `sh -c`
//! (a glob needs a shell) that publishes exactly the verified RPMs.
//!
//! Options come from the environment so `plan`'s arguments stay the same
//! for every format: `KHOTFIX_K8S_NAME`, `_NAMESPACE`, `_IMAGE`,
//! `_PARALLELISM`, `_CACHE_CLAIM`, `_OUT_CLAIM`, `_KEYS_SECRET`, `_WORKDIR`.

use super::plan_digest;
use crate::plan::Plan;
use anyhow::{bail, Result};
use serde_json::{json, Value};

/// Knobs of the generated manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sOptions {
    /// Prefix of the Job names.
    pub name: String,
    pub namespace: Option<String>,
    /// Image with khotfix, podman and the recipes at `workdir`.
    pub image: String,
    /// Pods at a time (capped at the number of jobs).
    pub parallelism: usize,
    /// PersistentVolumeClaim for the download/build cache.
    pub cache_claim: String,
    /// PersistentVolumeClaim (ReadWriteMany) for `/shared` (out and repo).
    pub out_claim: String,
    /// Secret holding the signing keys in the `khotfix keys generate` layout
    /// (mounted read-only at `/keys`).
    pub keys_secret: String,
    /// Working directory in the image: recipe paths are relative to it.
    pub workdir: String,
}

/// Where the cache volume is mounted; `KHOTFIX_CACHE_DIR` and `XDG_CACHE_HOME`
/// both point there so the cache is found under either convention.
pub const CACHE_DIR: &str = "/var/cache/khotfix";
pub const SHARED: &str = "/shared";
pub const OUT: &str = "/shared/out";
pub const REPO: &str = "/shared/repo";
pub const KEYS: &str = "/keys";

impl Default for K8sOptions {
    fn default() -> Self {
        K8sOptions {
            name: "khotfix".into(),
            namespace: None,
            image: "khotfix:latest".into(),
            parallelism: 4,
            cache_claim: "khotfix-cache".into(),
            out_claim: "khotfix-shared".into(),
            keys_secret: "khotfix-keys".into(),
            workdir: "/src".into(),
        }
    }
}

impl K8sOptions {
    /// Defaults overridden by `KHOTFIX_K8S_*` variables; every value is validated.
    pub fn from_env() -> Result<K8sOptions> {
        let mut o = K8sOptions::default();
        let var = |k: &str| {
            std::env::var(format!("KHOTFIX_K8S_{k}"))
                .ok()
                .filter(|v| !v.is_empty())
        };
        if let Some(v) = var("NAME") {
            o.name = v;
        }
        o.namespace = var("NAMESPACE");
        if let Some(v) = var("IMAGE") {
            o.image = v;
        }
        if let Some(v) = var("PARALLELISM") {
            o.parallelism = match v.parse() {
                Ok(n) if n >= 1 => n,
                _ => bail!("KHOTFIX_K8S_PARALLELISM={v:?}: expected a whole number >= 1"),
            };
        }
        if let Some(v) = var("CACHE_CLAIM") {
            o.cache_claim = v;
        }
        if let Some(v) = var("OUT_CLAIM") {
            o.out_claim = v;
        }
        if let Some(v) = var("KEYS_SECRET") {
            o.keys_secret = v;
        }
        if let Some(v) = var("WORKDIR") {
            o.workdir = v;
        }
        o.validate()?;
        Ok(o)
    }

    pub fn validate(&self) -> Result<()> {
        dns_label("KHOTFIX_K8S_NAME", &self.name, 40)?;
        if let Some(ns) = &self.namespace {
            dns_label("KHOTFIX_K8S_NAMESPACE", ns, 63)?;
        }
        dns_label("KHOTFIX_K8S_CACHE_CLAIM", &self.cache_claim, 253)?;
        dns_label("KHOTFIX_K8S_OUT_CLAIM", &self.out_claim, 253)?;
        dns_label("KHOTFIX_K8S_KEYS_SECRET", &self.keys_secret, 253)?;
        if self.image.is_empty()
            || self.image.len() > 255
            || self
                .image
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            bail!("KHOTFIX_K8S_IMAGE {:?}: not an image reference", self.image);
        }
        crate::util::validate::host_path("KHOTFIX_K8S_WORKDIR", &self.workdir)
            .map_err(anyhow::Error::msg)?;
        Ok(())
    }
}

fn dns_label(what: &str, v: &str, max: usize) -> Result<()> {
    let ok = !v.is_empty()
        && v.len() <= max
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !v.starts_with('-')
        && !v.ends_with('-');
    if !ok {
        bail!("{what} {v:?}: must be lowercase letters, digits and '-' (at most {max} characters), not starting or ending with '-'");
    }
    Ok(())
}

/// The two manifests as JSON values (build Job, publish Job).
pub fn manifests(plan: &Plan, o: &K8sOptions) -> Result<Vec<Value>> {
    o.validate()?;
    if plan.jobs.is_empty() {
        bail!("the plan has no jobs: nothing to build");
    }
    let mut recipes: Vec<String> = Vec::new();
    for j in &plan.jobs {
        let r = j.recipe.display().to_string();
        if j.recipe.is_absolute() {
            bail!("recipe {r} is an absolute path; give recipe paths relative to the image's working directory ({})", o.workdir);
        }
        crate::util::validate::relative_path("recipe path", &r).map_err(anyhow::Error::msg)?;
        if !recipes.contains(&r) {
            recipes.push(r);
        }
    }
    let digest = plan_digest(plan);
    let short = &digest[..8];
    let build_name = format!("{}-build-{short}", o.name);
    let publish_name = format!("{}-publish-{short}", o.name);
    let labels = json!({"app.kubernetes.io/name": "khotfix", "app.kubernetes.io/part-of": o.name, "khotfix.io/plan": digest});
    let meta = |name: &str, component: &str| {
        let mut l = labels.clone();
        l["app.kubernetes.io/component"] = json!(component);
        let mut m = json!({"name": name, "labels": l});
        if let Some(ns) = &o.namespace {
            m["namespace"] = json!(ns);
        }
        m
    };
    let env = json!([
        {"name": "KHOTFIX_CACHE_DIR", "value": CACHE_DIR},
        {"name": "XDG_CACHE_HOME", "value": "/var/cache"},
        // `khotfix publish` signs repomd.xml with the package key.
        {"name": "KHOTFIX_GPG_KEY", "value": format!("{KEYS}/{}", crate::keys::PGP_SECRET_FILE)},
    ]);
    let mounts = json!([
        {"name": "cache", "mountPath": CACHE_DIR},
        {"name": "shared", "mountPath": SHARED},
        {"name": "keys", "mountPath": KEYS, "readOnly": true},
    ]);
    let volumes = json!([
        {"name": "cache", "persistentVolumeClaim": {"claimName": o.cache_claim}},
        {"name": "shared", "persistentVolumeClaim": {"claimName": o.out_claim}},
        {"name": "keys", "secret": {"secretName": o.keys_secret, "defaultMode": 0o400}},
    ]);
    let mut args: Vec<Value> = vec![json!("run")];
    args.extend(recipes.iter().map(|r| json!(r)));
    for a in [
        "--job-index",
        "$(JOB_COMPLETION_INDEX)",
        "--expect-plan",
        &digest,
        "--out",
        OUT,
        "--keys",
        KEYS,
    ] {
        args.push(json!(a));
    }
    let n = plan.jobs.len();
    let build = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta(&build_name, "build"),
        "spec": {
            "completionMode": "Indexed",
            "completions": n,
            "parallelism": o.parallelism.min(n),
            "backoffLimit": n,
            "template": {
                "metadata": {"labels": meta(&build_name, "build")["labels"].clone()},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "khotfix",
                        "image": o.image,
                        "workingDir": o.workdir,
                        "command": ["khotfix"],
                        "args": args,
                        "env": env,
                        // Builder containers (podman) need it.
                        "securityContext": {"privileged": true},
                        "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                }
            }
        }
    });
    let publish = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta(&publish_name, "publish"),
        "spec": {
            "suspend": true,
            "completions": 1,
            "backoffLimit": 2,
            "template": {
                "metadata": {"labels": meta(&publish_name, "publish")["labels"].clone()},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "publish",
                        "image": o.image,
                        "workingDir": o.workdir,
                        "command": ["/bin/sh", "-c", publish_script()],
                        "env": env,
                        "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                }
            }
        }
    });
    Ok(vec![build, publish])
}

/// The publish pod's script: the verified RPMs only, no other input.
pub fn publish_script() -> String {
    format!(
        "set -eu\nset -- {OUT}/verified/*/*.rpm\n[ -e \"$1\" ] || {{ echo \"khotfix: no verified packages under {OUT}/verified\" >&2; exit 1; }}\nexec khotfix publish --repo {REPO} \"$@\"\n"
    )
}

/// The multi-document YAML, with how-to-apply comments on top.
pub fn manifest_yaml(plan: &Plan, o: &K8sOptions) -> Result<String> {
    let docs = manifests(plan, o)?;
    let name = |d: &Value| {
        d["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let (b, p) = (name(&docs[0]), name(&docs[1]));
    let ns = o
        .namespace
        .as_ref()
        .map(|n| format!(" -n {n}"))
        .unwrap_or_default();
    let mut out = format!(
        "# khotfix: {} job(s), plan {}. Generated by `khotfix plan --format k8s`.\n\
         # Needs PVCs {} (cache) and {} (ReadWriteMany, /shared) and Secret {} (signing keys).\n\
         # Apply, wait for the build Job to finish (complete or failed: failed jobs are not\n\
         # published), then resume the suspended publish Job:\n\
         #   kubectl{ns} apply -f this.yaml\n\
         #   kubectl{ns} wait --for=condition=complete job/{b} --timeout=24h || kubectl{ns} wait --for=condition=failed job/{b} --timeout=1m\n\
         #   kubectl{ns} patch job/{p} --type=merge -p '{{\"spec\":{{\"suspend\":false}}}}'\n",
        plan.jobs.len(),
        plan_digest(plan),
        o.cache_claim,
        o.out_claim,
        o.keys_secret
    );
    for (i, j) in plan.jobs.iter().enumerate() {
        out.push_str(&format!("#   index {i}: {}\n", j.id));
    }
    out.push_str(&crate::util::yaml::stream(&docs)?);
    Ok(out)
}

/// One document as YAML (`---` first), by the one YAML writer.
pub fn to_yaml(v: &Value) -> Result<String> {
    crate::util::yaml::stream(std::slice::from_ref(v))
}
