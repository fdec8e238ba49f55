//! Adding a distro is data: a definition loaded from a file (not built in)
//! flows through the whole `Distro` API (kernel ownership, kpatch flags,
//! kernel config lookup, builder definition) with no code naming it, and the
//! built-in set is exactly the TOML files under `src/distros/`.

use khotfix::build::builder::{Base, BuilderDef};
use khotfix::distro::{Distro, Family, KpatchMode, RepoKind};
use khotfix::kernel::KernelRelease;
use khotfix::prepare::srpm;
use std::path::{Path, PathBuf};

fn example9() -> Distro {
    Distro::load(Path::new("tests/data/distros/example9.toml")).unwrap()
}

#[test]
fn a_distro_from_a_file_flows_through_the_api() {
    let d = example9();
    assert_eq!(d.name, "example9");
    assert_eq!(d.family, Family::Rpm);
    assert_eq!(d.kpatch_mode, KpatchMode::Srpm);
    assert_eq!(d.repos[0].kind, RepoKind::Source);

    let k = KernelRelease::parse("5.14.0-362.8.1.el9_3.x86_64").unwrap();
    assert!(d.owns(&k), "el9_3 is flavour el9");
    assert!(!d.owns(&KernelRelease::parse("3.10.0-1062.9.1.el7.x86_64").unwrap()));
    assert_eq!(
        d.kpatch_flags_for(&k),
        ["--skip-compiler-check", "--debug"],
        "version flags apply to 5.14.0"
    );
    let other = KernelRelease::parse("5.15.0-1.el9.x86_64").unwrap();
    assert_eq!(d.kpatch_flags_for(&other), ["--skip-compiler-check"]);

    assert_eq!(
        d.config_candidates(&k, "x86_64", Path::new("/srpm"), Some(Path::new("/tree"))),
        [
            PathBuf::from("/srpm/kernel-x86_64-rhel.config"),
            PathBuf::from("/tree/configs/kernel-5.14.0-x86_64.config"),
        ]
    );
    // find_config takes the distro, not its name: a real lookup on disk.
    let root = tempfile::tempdir().unwrap();
    let cfg = root.path().join("kernel-x86_64-rhel.config");
    std::fs::write(&cfg, "CONFIG_LIVEPATCH=y\n").unwrap();
    assert_eq!(
        srpm::find_config(&d, &k, "x86_64", root.path(), None).unwrap(),
        cfg
    );
    let e = srpm::find_config(&d, &k, "x86_64", Path::new("/nonexistent"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("(example9)"), "{e}");

    // It reuses alinux3's builder: the same files, base and image.
    let b = BuilderDef::for_distro(&d).unwrap();
    assert_eq!(b.base, Base::External);
    assert_eq!(b.files[0].0, "Containerfile");
    assert_eq!(b.tag(), BuilderDef::get("alinux3").unwrap().tag());
}

#[test]
fn a_builder_that_is_not_embedded_is_one_clear_error() {
    let text = std::fs::read_to_string("tests/data/distros/example9.toml")
        .unwrap()
        .replace("builder = \"alinux3\"", "builder = \"example9\"");
    let d = Distro::parse("example9.toml", &text).unwrap();
    let e = BuilderDef::for_distro(&d).unwrap_err().to_string();
    assert_eq!(
        e,
        "distro example9: builder \"example9\" has no containers/example9/Containerfile in this khotfix binary"
    );
}

#[test]
fn bad_definitions_are_one_line_naming_the_file() {
    let good = std::fs::read_to_string("tests/data/distros/example9.toml").unwrap();
    let cases = [
        (
            "kernel_config = [",
            "kernel_config = [\n    \"/etc/kernel.config\",",
            "must start with {root}/ or {tree}/",
        ),
        (
            "kernel_config = [",
            "kernel_config = [\n    \"{root}/../x\",",
            "no '..'",
        ),
        (
            "kernel_config = [",
            "kernel_config = [\n    \"{root}/{release}\",",
            "only {version}, {arch}, {kver}",
        ),
        (
            "builder = \"alinux3\"",
            "builder = \"../x\"",
            "builder \"../x\"",
        ),
        (
            "rpm_dist = \"ex9\"",
            "rpm_dist = \"ex 9\"",
            "rpm_dist \"ex 9\"",
        ),
        ("dists = [\"el9\"]", "dists = []", "dists is empty"),
        (
            "builder_base = \"external\"",
            "builder_base = \"docker\"",
            "unknown variant",
        ),
        (
            "arch = \"x86_64\"",
            "arch = \"x86_64\"\nflavor = \"x\"",
            "unknown field",
        ),
    ];
    for (from, to, want) in cases {
        assert!(good.contains(from), "{from}");
        let text = good.replacen(from, to, 1);
        let e = format!("{:#}", Distro::parse("d/example9.toml", &text).unwrap_err());
        assert!(e.starts_with("d/example9.toml: "), "{e}");
        assert!(e.contains(want), "want {want:?} in {e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    }
    let e = Distro::load(Path::new("tests/data/distros/missing.toml")).unwrap_err();
    assert!(
        format!("{e:#}").contains("tests/data/distros/missing.toml"),
        "{e:#}"
    );
}

#[test]
fn the_builtins_are_exactly_the_files_under_src_distros() {
    let mut on_disk: Vec<String> = std::fs::read_dir("src/distros")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut names: Vec<String> = Distro::names().into_iter().map(String::from).collect();
    names.sort();
    assert_eq!(names, on_disk);
    for n in &names {
        let d = Distro::builtin(n).unwrap();
        let from_file = Distro::load(&Path::new("src/distros").join(format!("{n}.toml"))).unwrap();
        assert_eq!(d.builder, from_file.builder);
        // Every built-in distro's builder is embedded.
        BuilderDef::for_distro(&d).unwrap();
    }
}
