//! The container engine's part of the memo ([`crate::util::memo`]): the
//! builder image id is a function of the engine's image index.

use crate::util::memo::Witness;
use std::path::Path;

/// The engine's image index, the file every build, tag or removal
/// rewrites (podman: `<graphroot>/<driver>-images/images.json`; docker:
/// `<root>/image/<driver>/repositories.json`), plus podman's storage
/// configuration. `None` when the engine does not say or the file is absent.
pub fn engine_witnesses(engine: &super::container::Engine) -> Option<Vec<Witness>> {
    use super::container::EngineKind;
    let format = match engine.kind {
        EngineKind::Podman => "{{.Store.GraphRoot}}\t{{.Store.GraphDriverName}}",
        EngineKind::Docker => "{{.DockerRootDir}}\t{{.Driver}}",
    };
    let out = engine
        .command(["info", "--format", format])
        .stdout_string()
        .ok()?;
    let (root, driver) = out.trim().split_once('\t')?;
    let (root, driver) = (Path::new(root), driver.trim());
    if !root.is_absolute() || driver.is_empty() || driver.contains('/') {
        return None;
    }
    let index = match engine.kind {
        EngineKind::Podman => root.join(format!("{driver}-images/images.json")),
        EngineKind::Docker => root.join(format!("image/{driver}/repositories.json")),
    };
    if !index.is_file() {
        return None;
    }
    let mut w = vec![Witness::of(&index)];
    if engine.kind == EngineKind::Podman {
        w.push(Witness::of(Path::new("/etc/containers/storage.conf")));
        if let Some(home) = std::env::var_os("HOME") {
            w.push(Witness::of(
                &Path::new(&home).join(".config/containers/storage.conf"),
            ));
        }
    }
    Some(w)
}

/// The query naming an image id lookup: engine, its global options, the
/// user (rootless stores differ) and storage overrides from the environment.
pub fn image_query(engine: &super::container::Engine, image: &str) -> String {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    format!(
        "image-id\0{}\0{}\0{}\0{}\0{}\0{}",
        engine.program,
        engine.global_options.join("\u{1}"),
        // SAFETY: getuid has no preconditions and cannot fail.
        unsafe { libc::getuid() },
        env("CONTAINERS_STORAGE_CONF"),
        env("DOCKER_HOST"),
        image
    )
}
