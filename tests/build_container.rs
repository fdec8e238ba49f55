//! Container runtime against the real engine (podman here; configure it with
//! KHOTFIX_CONTAINER_ENGINE / _ENGINE_OPTS / _RUN_OPTS): timeout and Ctrl-C
//! stop the container and leave nothing behind, and files a root container
//! writes into an output mount are given back to the directory's owner.
//! Runs in the debian12 builder image (built or reused).

mod support;

use support::bin::khotfix;

use khotfix::build::container::{self, Engine, Mount, RunError, RunSpec};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

fn engine_and_image() -> (Engine, String) {
    let engine = support::container::engine();
    let logs = tempfile::tempdir().unwrap();
    let image = support::container::debian12_builder(&engine, logs.path());
    (engine, image)
}

fn spec(image: &str, prefix: &str, command: &[&str], dir: &std::path::Path) -> RunSpec {
    RunSpec {
        image: image.into(),
        name_prefix: prefix.into(),
        mounts: vec![Mount::rw(dir.join("out"), "/out")],
        env: vec![],
        workdir: Some("/out".into()),
        command: command.iter().map(|s| s.to_string()).collect(),
        timeout: None,
        output_dirs: vec![dir.join("out")],
        log: dir.join("run.log"),
    }
}

/// One test function: the Ctrl-C flag is process-wide, so these must not
/// run concurrently with each other.
#[test]
fn timeout_and_ctrl_c_stop_the_container_and_outputs_are_given_back() {
    let (engine, image) = engine_and_image();
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("out")).unwrap();

    // 1. Outputs written as root inside go back to the owner of the output dir.
    std::os::unix::fs::chown(d.path().join("out"), Some(12345), Some(12346)).unwrap();
    let s = spec(
        &image,
        "own",
        &["sh", "-c", "mkdir -p sub && echo hi > sub/f && echo done"],
        d.path(),
    );
    let r = engine.run(&s, &khotfix::progress::Quiet).unwrap();
    assert_eq!(
        r.exit_code,
        0,
        "{}",
        std::fs::read_to_string(&s.log).unwrap()
    );
    let m = std::fs::metadata(d.path().join("out/sub/f")).unwrap();
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!((m.uid(), m.gid()), (12345, 12346));
    } else {
        assert_eq!(m.uid(), unsafe { libc::geteuid() });
    }
    assert!(
        std::fs::read_to_string(&s.log).unwrap().contains("done"),
        "log holds the container output"
    );
    assert!(
        !engine.container_exists(&r.name).unwrap(),
        "--rm removed {}",
        r.name
    );

    // A failing command reports its exit code.
    let s = spec(&image, "fail", &["sh", "-c", "exit 7"], d.path());
    assert_eq!(
        engine.run(&s, &khotfix::progress::Quiet).unwrap().exit_code,
        7
    );

    // 2. Timeout: stopped, typed error, nothing left.
    let prefix = format!("stoptest-{}", std::process::id());
    let mut s = spec(&image, &prefix, &["sleep", "300"], d.path());
    s.timeout = Some(Duration::from_secs(3));
    let t = Instant::now();
    let e = engine.run(&s, &khotfix::progress::Quiet).unwrap_err();
    assert!(
        matches!(e.downcast_ref::<RunError>(), Some(RunError::Timeout { .. })),
        "{e:#}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "stop did not take the 300 s sleep"
    );
    assert_eq!(
        engine
            .containers_with_prefix(&format!("khotfix-{prefix}"))
            .unwrap(),
        Vec::<String>::new()
    );

    // 3. Ctrl-C (a real SIGINT to this process) stops the container.
    container::clear_interrupt();
    let mut s = spec(&image, &prefix, &["sleep", "300"], d.path());
    s.timeout = None;
    let sender = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(3));
        // SAFETY: delivering SIGINT to ourselves; the run installed a handler.
        unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
    });
    let e = engine.run(&s, &khotfix::progress::Quiet).unwrap_err();
    sender.join().unwrap();
    assert!(
        matches!(
            e.downcast_ref::<RunError>(),
            Some(RunError::Interrupted { .. })
        ),
        "{e:#}"
    );
    assert!(container::interrupted());
    container::clear_interrupt();
    assert_eq!(
        engine
            .containers_with_prefix(&format!("khotfix-{prefix}"))
            .unwrap(),
        Vec::<String>::new()
    );
}

/// Ctrl-C on `khotfix build` while a container is compiling: the container
/// is stopped, the command exits FAILED (1) promptly, nothing is left.
#[test]
fn ctrl_c_on_the_cli_stops_the_build_container() {
    let (engine, _image) = engine_and_image();
    let kernel = khotfix::fetch::apt::current_kernel("linux-image-amd64").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("slow");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(
        src.join("slow.c"),
        "#include <linux/module.h>\nMODULE_LICENSE(\"GPL\");\n",
    )
    .unwrap();
    // Kept by the generated Kbuild: makes the compile hang for 5 minutes.
    std::fs::write(
        src.join("Kbuild"),
        "obj-m += slow.o\nccflags-y += $(shell sleep 300)\n",
    )
    .unwrap();
    let id = 70000 + (std::process::id() % 9999) as u64;
    std::fs::write(
        tmp.path().join("recipe.toml"),
        format!(
            "[hotfix]\nid = {id}\nname = \"slow\"\nsummary = \"s\"\ndescription = \"d\"\nversion = \"1\"\n\n\
             [[target]]\nname = \"deb\"\ndistro = \"debian12\"\nbackend = \"kbuild\"\nkernels = [\"{kernel}\"]\nmodule_source = \"slow\"\n"
        ),
    )
    .unwrap();
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("khotfix-cli-cache");
    let mut child = khotfix()
        .args(["build", "--out"])
        .arg(tmp.path().join("out"))
        .arg(tmp.path().join("recipe.toml"))
        .env("KHOTFIX_CACHE_DIR", &cache)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = format!("khotfix-{id}-deb-");
    let deadline = Instant::now() + Duration::from_secs(300);
    while engine.containers_with_prefix(&prefix).unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the build container never started"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "khotfix exited before its container started"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(120),
        "stop took {:?}",
        t.elapsed()
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted: container"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED"));
    assert_eq!(
        engine.containers_with_prefix(&prefix).unwrap(),
        Vec::<String>::new()
    );
}
