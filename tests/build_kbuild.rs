//! kbuild backend for real: the debian12 builder (mmdebstrap + import +
//! Containerfile, reused when its content hash exists), the sample livepatch
//! module built against the headers of Debian's current 6.1 ABI (discovered
//! with `apt-cache depends linux-image-amd64`), checked with kmod's modinfo;
//! then the same job again is a cache hit, through the library and the CLI.
//! Needs the container env vars (see README: KHOTFIX_CONTAINER_*).

mod support;

use support::kernel::modinfo;

use support::bin::khotfix;

use khotfix::build::builder::{self, BuildImageOptions};
use khotfix::build::cache::BuildCache;
use khotfix::build::container::Engine;
use khotfix::build::{self as kbuild_stage, BuildInputs, BuildSettings, KernelInputs};
use khotfix::config::Config;
use khotfix::fetch::FetchedKernel;
use khotfix::kernel::KernelRelease;
use khotfix::plan::Plan;
use khotfix::recipe::Recipe;
use std::path::{Path, PathBuf};

fn recipe_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kbuild-recipe/recipe.toml")
}

/// Shared between runs so the headers are downloaded once per ABI.
fn headers_dir(kernel: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("khotfix-headers")
        .join(kernel)
}

#[test]
fn sample_livepatch_for_current_debian_abi_then_cache_hit() {
    let config = Config::load().unwrap();
    let engine =
        Engine::from_config(&config).expect("a container engine (set KHOTFIX_CONTAINER_ENGINE)");
    let tmp = tempfile::tempdir().unwrap();
    // KHOTFIX_TEST_FRESH_BUILDER=1 rebuilds the image (and its mmdebstrap
    // base) from scratch; otherwise an image with the same content is reused.
    let force = std::env::var_os("KHOTFIX_TEST_FRESH_BUILDER").is_some_and(|v| v == "1");
    let opts = BuildImageOptions {
        log_dir: tmp.path().join("logs"),
        force,
        ..Default::default()
    };
    let image = builder::ensure(&engine, "debian12", &opts, &khotfix::progress::Quiet)
        .expect("debian12 builder");
    if force {
        assert!(!image.reused);
        let log = std::fs::read_to_string(tmp.path().join("logs/builder-debian12.log")).unwrap();
        assert!(
            log.contains("$ mmdebstrap --variant=minbase --format=tar bookworm"),
            "{log}"
        );
        assert!(log.contains("\"import\""), "{log}");
    }
    assert!(image.tag.starts_with("localhost/khotfix-builder-debian12:"));

    let kernel = khotfix::fetch::apt::current_kernel("linux-image-amd64")
        .unwrap()
        .to_string();
    assert!(
        kernel.starts_with("6.1.0-") && kernel.ends_with("-amd64"),
        "{kernel}"
    );
    let recipe = Recipe::load(&recipe_path()).unwrap();
    let plan = Plan::expand(
        std::slice::from_ref(&recipe),
        &[KernelRelease::parse(&kernel).unwrap()],
    )
    .unwrap();
    assert_eq!(plan.jobs.len(), 1);
    let job = plan.jobs[0].clone();
    let target = &recipe.targets[0];
    // The headers as the fetch stage supplies them (no image: only kbuild's inputs).
    let fetch_opts = khotfix::fetch::FetchOptions {
        cache_dir: Some(headers_dir(&kernel)),
        deb_image: false,
        ..khotfix::fetch::FetchOptions::from_env().unwrap()
    };
    let distro = khotfix::distro::Distro::builtin("debian12").unwrap();
    let FetchedKernel::Deb(h) = khotfix::fetch::fetch_job(&job, &distro, &fetch_opts).unwrap()
    else {
        panic!("debian12 fetches .debs")
    };
    assert_eq!(h.files.len(), 3, "{:?}", h.files);
    let inputs = BuildInputs {
        job: job.clone(),
        kernel: KernelInputs::Headers {
            root: h.root.clone(),
            kdir: h
                .headers_dir
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        },
        // Hash the header trees themselves here; the CLI uses the .deb digests.
        kernel_digests: vec![],
        patches: vec![],
        module_source: target.module_source.clone(),
        skip_compiler_check: false,
    };
    let settings = BuildSettings {
        out_dir: tmp.path().join("out"),
        work_dir: tmp.path().join("work"),
        log_dir: tmp.path().join("out/logs"),
        make_jobs: 2,
        timeout: Some(std::time::Duration::from_secs(600)),
        cache: Some(BuildCache::new(tmp.path().join("cache"))),
        image: None,
        kpatch_build: None,
    };
    let first =
        kbuild_stage::build_job(&engine, &inputs, &settings, &khotfix::progress::Quiet).unwrap();
    assert!(!first.cache_hit);
    assert_eq!(
        first.module,
        tmp.path().join("out").join(&job.id).join("kpatch-90001.ko")
    );
    assert_eq!(modinfo(&first.module, "livepatch"), "Y");
    assert_eq!(modinfo(&first.module, "name"), "kpatch_90001");
    let vermagic = modinfo(&first.module, "vermagic");
    assert!(
        vermagic.starts_with(&format!("{kernel} SMP ")),
        "vermagic {vermagic:?} is not for {kernel}"
    );
    let log = std::fs::read_to_string(&first.log).unwrap();
    assert!(
        log.contains("LD [M]") && log.contains("kpatch-90001.ko"),
        "{log}"
    );

    // (c) Unchanged job: served from the cache, same bytes, no container.
    let bytes = std::fs::read(&first.module).unwrap();
    std::fs::remove_file(&first.module).unwrap();
    let second =
        kbuild_stage::build_job(&engine, &inputs, &settings, &khotfix::progress::Quiet).unwrap();
    assert!(second.cache_hit);
    assert_eq!(second.cache_key, first.cache_key);
    assert_eq!(std::fs::read(&second.module).unwrap(), bytes);

    // A changed module source is a different key (so it would be rebuilt).
    let changed = tmp.path().join("changed-src");
    khotfix::build::kbuild::copy_source(target.module_source.as_ref().unwrap(), &changed).unwrap();
    let c = changed.join("livepatch-sample.c");
    let text = std::fs::read_to_string(&c)
        .unwrap()
        .replace("live patched by khotfix", "live patched again");
    std::fs::write(&c, text).unwrap();
    let other = BuildInputs {
        module_source: Some(changed),
        ..inputs.clone()
    };
    let d = khotfix::distro::Distro::builtin("debian12").unwrap();
    assert_ne!(
        kbuild_stage::cache_key(&other, &d, &image.id).unwrap(),
        first.cache_key
    );
    assert_ne!(
        kbuild_stage::cache_key(&inputs, &d, "sha256:other-image").unwrap(),
        first.cache_key
    );
}

#[test]
fn cli_build_reports_built_then_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let run = || {
        khotfix()
            .args(["build", "--json", "--out"])
            .arg(tmp.path().join("out"))
            .arg(recipe_path())
            .env("KHOTFIX_CACHE_DIR", tmp.path().join("cache"))
            .output()
            .unwrap()
    };
    let one = run();
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(v[0]["ok"], true);
    assert_eq!(v[0]["cache_hit"], false);
    let two = run();
    assert!(
        two.status.success(),
        "{}",
        String::from_utf8_lossy(&two.stderr)
    );
    let v2: serde_json::Value = serde_json::from_slice(&two.stdout).unwrap();
    assert_eq!(v2[0]["cache_hit"], true);
    assert_eq!(v2[0]["module"], v[0]["module"]);
    let ko = PathBuf::from(v2[0]["module"].as_str().unwrap());
    assert_eq!(modinfo(&ko, "name"), "kpatch_90001");
    // The table form.
    let three = khotfix()
        .args(["build", "--out"])
        .arg(tmp.path().join("out"))
        .arg(recipe_path())
        .env("KHOTFIX_CACHE_DIR", tmp.path().join("cache"))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&three.stdout);
    assert!(
        table.starts_with("JOB ")
            && table.contains(" cached ")
            && table.contains("1 job(s): 0 built, 1 cached, 0 failed"),
        "{table}"
    );
}
