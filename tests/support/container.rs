//! The container engine and Debian 12 builder image the build tests run in,
//! configured the way CI configures them (`.ci/env`), so a test started
//! from a plain shell behaves like one started by CI.

use khotfix::build::builder::{self, BuildImageOptions};
use khotfix::build::container::Engine;
use khotfix::config::Config;
use std::path::Path;
use std::process::Command;

/// `.ci/env`'s container settings: podman with runc and the ulimits the
/// shared machine needs.
pub const CI_ENV: &[(&str, &str)] = &[
    ("KHOTFIX_CONTAINER_ENGINE", "podman"),
    ("KHOTFIX_CONTAINER_ENGINE_OPTS", "--runtime runc"),
    (
        "KHOTFIX_CONTAINER_RUN_OPTS",
        "--ulimit nofile=1024:1024 --ulimit nproc=1024:1024",
    ),
    (
        "KHOTFIX_CONTAINER_BUILD_OPTS",
        "--ulimit nofile=1024:1024 --ulimit nproc=1024:1024",
    ),
];

/// Give `c` CI's container settings where the environment sets none.
pub fn ci_container_env(c: &mut Command) -> &mut Command {
    for (k, v) in CI_ENV {
        if std::env::var_os(k).is_none() {
            c.env(k, v);
        }
    }
    c
}

/// The engine the configuration (KHOTFIX_CONTAINER_*) names.
pub fn engine() -> Engine {
    let config = Config::load().expect("config");
    Engine::from_config(&config).expect("a container engine (set KHOTFIX_CONTAINER_ENGINE)")
}

/// The debian12 builder image's tag (built if missing), its log in `log_dir`.
pub fn debian12_builder(engine: &Engine, log_dir: &Path) -> String {
    builder::ensure(
        engine,
        "debian12",
        &BuildImageOptions {
            log_dir: log_dir.into(),
            ..Default::default()
        },
        &khotfix::progress::Quiet,
    )
    .expect("debian12 builder image")
    .tag
}
