//! User configuration: a TOML file plus environment overrides.
//!
//! The file is `$KHOTFIX_CONFIG`, else `$XDG_CONFIG_HOME/khotfix/config.toml`,
//! else `~/.config/khotfix/config.toml`; a missing file means defaults. Every
//! setting can be overridden by an environment variable so CI can configure
//! a machine without writing files. Nothing host-specific is a default: a
//! machine whose podman needs `--runtime runc` or explicit ulimits says so in
//! its config or environment.
//!
//! ```toml
//! [container]
//! engine = "podman"                      # or "docker", or a path
//! engine_options = ["--runtime", "runc"] # before the subcommand
//! run_options = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
//! build_options = []                     # extra `build` options
//!
//! [build]
//! timeout = "2h"                         # per job: 90s, 30m, 2h, or seconds
//! cache_dir = "/var/cache/khotfix"
//! kpatch_source = "/srv/vendor/kpatch-0.9.11.tar.gz"  # offline image builds
//! ```

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Environment variables read by [`Config::load`]; documented in the README.
pub mod env {
    /// Path of the config file.
    pub const CONFIG: &str = "KHOTFIX_CONFIG";
    /// Container engine: `podman`, `docker`, or a path to either.
    pub const ENGINE: &str = "KHOTFIX_CONTAINER_ENGINE";
    /// Engine global options, whitespace-separated (`--runtime runc`).
    pub const ENGINE_OPTS: &str = "KHOTFIX_CONTAINER_ENGINE_OPTS";
    /// Extra `run` options, whitespace-separated (`--ulimit nofile=1024:1024`).
    pub const RUN_OPTS: &str = "KHOTFIX_CONTAINER_RUN_OPTS";
    /// Extra `build` options, whitespace-separated.
    pub const BUILD_OPTS: &str = "KHOTFIX_CONTAINER_BUILD_OPTS";
    /// Per-job build timeout: `90s`, `30m`, `2h` or plain seconds.
    pub const BUILD_TIMEOUT: &str = "KHOTFIX_BUILD_TIMEOUT";
    /// Root of khotfix's caches (build cache under `build/`).
    pub const CACHE_DIR: &str = "KHOTFIX_CACHE_DIR";
    /// A local kpatch release tarball for builder images (offline machines).
    pub const KPATCH_SOURCE: &str = crate::build::kpatch_source::ENV_KPATCH_SOURCE;
}

/// Default per-job timeout: a full kpatch-build of a distro kernel on a
/// small machine takes well under this.
pub const DEFAULT_BUILD_TIMEOUT: Duration = Duration::from_secs(4 * 3600);

/// Resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Engine program; `None` means auto-detect (podman, then docker).
    pub engine: Option<String>,
    pub engine_options: Vec<String>,
    pub run_options: Vec<String>,
    pub build_options: Vec<String>,
    pub build_timeout: Duration,
    pub cache_dir: PathBuf,
    /// `[build] kpatch_source`: the kpatch release tarball builder images
    /// compile kpatch-build from (else `$KHOTFIX_KPATCH_SOURCE`, else a download).
    pub kpatch_source: Option<PathBuf>,
    /// Where the values came from, for error messages.
    pub source: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    container: RawContainer,
    #[serde(default)]
    build: RawBuild,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawContainer {
    engine: Option<String>,
    #[serde(default)]
    engine_options: Vec<String>,
    #[serde(default)]
    run_options: Vec<String>,
    #[serde(default)]
    build_options: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    timeout: Option<toml::Value>,
    cache_dir: Option<PathBuf>,
    kpatch_source: Option<PathBuf>,
}

impl Config {
    /// Load the config file (if any) and apply environment overrides.
    pub fn load() -> Result<Config> {
        Self::load_with(&|k| std::env::var(k).ok())
    }

    /// As [`Config::load`], reading variables through `var` (for tests).
    pub fn load_with(var: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        let path = config_path(var);
        let (raw, source) = match &path {
            Some(p) if p.exists() => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config {}", p.display()))?;
                let raw: RawConfig = toml::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("config {}: {}", p.display(), e.message().replace('\n', " "))
                })?;
                (raw, Some(p.clone()))
            }
            Some(p) if var(env::CONFIG).is_some() => bail!(
                "config {}: no such file (from ${})",
                p.display(),
                env::CONFIG
            ),
            _ => (RawConfig::default(), None),
        };
        let name = source
            .as_ref()
            .map_or_else(|| "defaults".to_string(), |p| p.display().to_string());
        let mut c = Config {
            engine: raw.container.engine,
            engine_options: raw.container.engine_options,
            run_options: raw.container.run_options,
            build_options: raw.container.build_options,
            build_timeout: match raw.build.timeout {
                None => DEFAULT_BUILD_TIMEOUT,
                Some(toml::Value::Integer(n)) if n > 0 => Duration::from_secs(n as u64),
                Some(toml::Value::String(s)) => {
                    parse_duration(&s).with_context(|| format!("config {name}: build.timeout"))?
                }
                Some(v) => bail!(
                    "config {name}: build.timeout {v} must be seconds or a string like \"2h\""
                ),
            },
            cache_dir: raw
                .build
                .cache_dir
                .unwrap_or_else(|| default_cache_dir(var)),
            kpatch_source: raw.build.kpatch_source,
            source,
        };
        if let Some(e) = nonempty(var(env::ENGINE)) {
            c.engine = Some(e);
        }
        if let Some(v) = var(env::ENGINE_OPTS) {
            c.engine_options = split_words(&v);
        }
        if let Some(v) = var(env::RUN_OPTS) {
            c.run_options = split_words(&v);
        }
        if let Some(v) = var(env::BUILD_OPTS) {
            c.build_options = split_words(&v);
        }
        if let Some(v) = nonempty(var(env::BUILD_TIMEOUT)) {
            c.build_timeout =
                parse_duration(&v).with_context(|| format!("${}", env::BUILD_TIMEOUT))?;
        }
        if let Some(v) = nonempty(var(env::CACHE_DIR)) {
            c.cache_dir = PathBuf::from(v);
        }
        if let Some(e) = &c.engine {
            if e.trim().is_empty() || e.contains(char::is_whitespace) {
                bail!("container engine {e:?} must be a program name or path without spaces");
            }
        }
        for o in c
            .engine_options
            .iter()
            .chain(&c.run_options)
            .chain(&c.build_options)
        {
            if o.contains('\0') {
                bail!("container option {o:?} contains a NUL byte");
            }
        }
        Ok(c)
    }

    /// Options for building a builder image with this configuration.
    pub fn image_options(
        &self,
        log_dir: PathBuf,
        kpatch_source: Option<PathBuf>,
    ) -> crate::build::builder::BuildImageOptions {
        crate::build::builder::BuildImageOptions {
            base: None,
            force: false,
            log_dir,
            kpatch_source,
            cache_dir: self.cache_dir.clone(),
            config_kpatch_source: self.kpatch_source.clone(),
        }
    }

    /// The build cache directory (`<cache_dir>/build`).
    pub fn build_cache_dir(&self) -> PathBuf {
        self.cache_dir.join("build")
    }
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().to_string())
}

fn home(var: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    nonempty(var("HOME"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

fn config_path(var: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(p) = nonempty(var(env::CONFIG)) {
        return Some(PathBuf::from(p));
    }
    let base = nonempty(var("XDG_CONFIG_HOME"))
        .map(PathBuf::from)
        .unwrap_or_else(|| home(var).join(".config"));
    Some(base.join("khotfix").join("config.toml"))
}

fn default_cache_dir(var: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    let base = nonempty(var("XDG_CACHE_HOME"))
        .map(PathBuf::from)
        .unwrap_or_else(|| home(var).join(".cache"));
    base.join("khotfix")
}

/// Whitespace-separated options (no quoting: container options never need it).
pub fn split_words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// `90`, `90s`, `30m`, `2h`: a positive duration.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        _ => (s, 1),
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_secs(n.saturating_mul(mult))),
        _ => {
            bail!("invalid duration {s:?}: use a positive number of seconds, or e.g. 90s, 30m, 2h")
        }
    }
}

/// Write a config file for tests and documentation examples.
pub fn example() -> &'static str {
    "[container]\nengine = \"podman\"\nengine_options = [\"--runtime\", \"runc\"]\nrun_options = [\"--ulimit\", \"nofile=1024:1024\", \"--ulimit\", \"nproc=1024:1024\"]\n\n[build]\ntimeout = \"2h\"\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_with(&|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_are_not_host_specific() {
        let d = tempfile::tempdir().unwrap();
        let c = load(&[("HOME", d.path().to_str().unwrap())]).unwrap();
        assert_eq!(c.engine, None);
        assert!(c.engine_options.is_empty() && c.run_options.is_empty());
        assert_eq!(c.build_timeout, DEFAULT_BUILD_TIMEOUT);
        assert_eq!(c.cache_dir, d.path().join(".cache/khotfix"));
    }

    #[test]
    fn file_then_env() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(&p, example()).unwrap();
        let ps = p.to_str().unwrap();
        let c = load(&[(env::CONFIG, ps)]).unwrap();
        assert_eq!(c.engine.as_deref(), Some("podman"));
        assert_eq!(c.engine_options, ["--runtime", "runc"]);
        assert_eq!(c.run_options.len(), 4);
        assert_eq!(c.build_timeout, Duration::from_secs(7200));
        let c = load(&[
            (env::CONFIG, ps),
            (env::ENGINE, "docker"),
            (env::RUN_OPTS, ""),
            (env::BUILD_TIMEOUT, "90s"),
        ])
        .unwrap();
        assert_eq!(c.engine.as_deref(), Some("docker"));
        assert!(c.run_options.is_empty());
        assert_eq!(c.build_timeout, Duration::from_secs(90));
    }

    #[test]
    fn bad_values_name_the_source() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(&p, "[container]\nengin = \"podman\"\n").unwrap();
        let e = load(&[(env::CONFIG, p.to_str().unwrap())]).unwrap_err();
        assert!(format!("{e:#}").contains("c.toml"), "{e:#}");
        let e = load(&[(env::CONFIG, "/nonexistent/k.toml")]).unwrap_err();
        assert!(format!("{e:#}").contains("no such file"), "{e:#}");
        let e = load(&[("HOME", "/nonexistent"), (env::BUILD_TIMEOUT, "soon")]).unwrap_err();
        assert!(format!("{e:#}").contains(env::BUILD_TIMEOUT), "{e:#}");
        assert!(parse_duration("0").is_err());
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
    }
}
