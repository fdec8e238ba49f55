//! The verify stage against real artifacts: the repository's Debian 12
//! ipvs livepatch module built with kbuild against the installed
//! linux-headers (ABI from apt-cache), signed with the kernel's own
//! scripts/sign-file, packaged with rpmbuild and signed with rpmsign + gpg.
//! Then: every static check passes on the good artifacts and each kind of
//! bad artifact fails exactly its check; and through the orchestrator, the
//! target kernel boots under qemu with the module loaded and patching ip_vs,
//! while a job with an unsigned RPM fails verify and is not published.

mod support;

use khotfix::fetch::{DebKernel, FetchedKernel};
use khotfix::plan::Plan;
use khotfix::recipe::Recipe;
use khotfix::run::artifacts::{PackagedRpm, SignOutput, StageData};
use khotfix::run::{
    self, JobContext, JobStatus, Pipeline, PublishOutput, RunSettings, Selection, StageKind,
    StageOutput,
};
use khotfix::verify::{self, Outcome, VerifyInputs, VerifyReport};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use support::gpg::{gpg, private_home};
use support::process::run;

struct Built {
    _dir: tempfile::TempDir,
    root: PathBuf,
    abi: String,
    unsigned: PathBuf,
    signed: PathBuf,
    cert: PathBuf,
    other_cert: PathBuf,
    rpm: PathBuf,
    rpm_unsigned: PathBuf,
    rpm_wrong_ko: PathBuf,
    key: PathBuf,
    other_key: PathBuf,
}

fn gpg_key(home: &Path, name: &str) -> PathBuf {
    private_home(home);
    run(gpg(home)
        .args([
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
        ])
        .arg(format!("{name} <{name}@example.com>"))
        .args(["rsa2048", "sign", "never"]));
    let out = home.join("key.asc");
    let armored = run(gpg(home).args(["--armor", "--export"]));
    std::fs::write(&out, armored).unwrap();
    out
}

fn x509(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key.pem"));
    let cert = dir.join(format!("{name}.cert.pem"));
    run(Command::new("openssl")
        .args([
            "req", "-new", "-nodes", "-utf8", "-sha256", "-days", "2", "-batch", "-x509",
            "-newkey", "rsa:2048",
        ])
        .arg("-subj")
        .arg(format!("/CN={name}/"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    (key, cert)
}

fn rpmbuild(dir: &Path, name: &str, abi: &str, ko: &Path) -> PathBuf {
    let top = dir.join(format!("rpmbuild-{name}"));
    std::fs::create_dir_all(top.join("SPECS")).unwrap();
    let spec = top.join("SPECS/h.spec");
    std::fs::write(
        &spec,
        format!(
            "Name: {name}\nVersion: 1.0\nRelease: 1\nSummary: verify test\nLicense: GPL-2.0\nBuildArch: x86_64\n\
             %description\nverify test\n%install\nmkdir -p %{{buildroot}}/usr/lib/kpatch/{abi}\n\
             install -m 0644 {ko} %{{buildroot}}/usr/lib/kpatch/{abi}/kpatch-30001.ko\n\
             %files\n/usr/lib/kpatch/{abi}/kpatch-30001.ko\n",
            ko = ko.display()
        ),
    )
    .unwrap();
    run(Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .args([
            "--define",
            "_build_id_links none",
            "--define",
            "__os_install_post %{nil}",
            "--define",
            "debug_package %{nil}",
            "-bb",
        ])
        .arg(&spec));
    let rpm = top.join(format!("RPMS/x86_64/{name}-1.0-1.x86_64.rpm"));
    assert!(rpm.is_file());
    rpm
}

fn built() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let abi = khotfix::verify::qemu::debian_kernel_abi().unwrap();
        // kbuild the repository's module source.
        let src = root.join("src");
        std::fs::create_dir_all(&src).unwrap();
        let repo_src =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("patches/ipvs-estimation-timer/debian12");
        for e in std::fs::read_dir(&repo_src).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), src.join(e.file_name())).unwrap();
        }
        run(Command::new("make")
            .arg("-C")
            .arg(format!("/lib/modules/{abi}/build"))
            .arg(format!("M={}", src.display()))
            .arg("modules"));
        let unsigned = src.join("kpatch-30001.ko");
        assert!(unsigned.is_file());
        // Sign with the kernel's sign-file.
        let (key, cert) = x509(&root, "khotfix-test-module-key");
        let (_, other_cert) = x509(&root, "someone-else");
        let signed = root.join("signed/kpatch-30001.ko");
        std::fs::create_dir_all(signed.parent().unwrap()).unwrap();
        std::fs::copy(&unsigned, &signed).unwrap();
        run(Command::new("/usr/lib/linux-kbuild-6.1/scripts/sign-file")
            .arg("sha256")
            .arg(&key)
            .arg(&cert)
            .arg(&signed));
        // Package and sign with rpmsign.
        let home = root.join("gnupg");
        let rpm_key = gpg_key(&home, "khotfix-test-repo");
        let other_key = gpg_key(&root.join("gnupg-other"), "other-repo");
        let pkg = format!("kernel-hotfix-30001-{}", abi.trim_end_matches("-amd64"));
        let rpm = rpmbuild(&root, &pkg, &abi, &signed);
        let rpm_unsigned = root.join("unsigned.rpm");
        std::fs::copy(&rpm, &rpm_unsigned).unwrap();
        let rpm_wrong_ko = rpmbuild(&root, "kernel-hotfix-30001-wrong", &abi, &unsigned);
        for r in [&rpm, &rpm_wrong_ko] {
            run(Command::new("rpmsign")
                .env("GNUPGHOME", &home)
                .args([
                    "--define",
                    "__gpg /usr/bin/gpg",
                    "--define",
                    "_gpg_name khotfix-test-repo",
                    "--define",
                ])
                .arg(format!("_gpg_path {}", home.display()))
                .args([
                    "--define",
                    "_gpg_sign_cmd_extra_args --pinentry-mode loopback --passphrase ''",
                    "--addsign",
                ])
                .arg(r));
        }
        Built {
            _dir: dir,
            root,
            abi,
            unsigned,
            signed,
            cert,
            other_cert,
            rpm,
            rpm_unsigned,
            rpm_wrong_ko,
            key: rpm_key,
            other_key,
        }
    })
}

fn inputs(b: &Built) -> VerifyInputs {
    VerifyInputs {
        kernel: b.abi.clone(),
        module: b.signed.clone(),
        rpm: Some(b.rpm.clone()),
        rpm_key: Some(b.key.clone()),
        module_cert: Some(b.cert.clone()),
        kernel_image: None,
        modules_dir: Some(format!("/lib/modules/{}", b.abi).into()),
        boot: false,
        work_dir: None,
    }
}

fn outcome(r: &VerifyReport, name: &str) -> Outcome {
    r.check(name)
        .unwrap_or_else(|| panic!("no {name} check in {r:#?}"))
        .outcome
}

fn failed(r: &VerifyReport) -> Vec<&str> {
    r.failures().iter().map(|c| c.name.as_str()).collect()
}

#[test]
fn good_artifacts_pass_every_static_check() {
    let b = built();
    let r = verify::verify(&inputs(b)).unwrap();
    assert!(r.passed(), "{r:#?}");
    for name in [
        "vermagic",
        "livepatch",
        "signature",
        "signature-valid",
        "modinfo",
        "rpm-signature",
        "rpm-payload",
    ] {
        assert_eq!(outcome(&r, name), Outcome::Pass, "{name}: {r:#?}");
    }
    // Compared against the kernel's own ip_vs.ko, flags included.
    assert!(
        r.check("vermagic").unwrap().message.contains("ip_vs.ko"),
        "{r:#?}"
    );
    assert!(r
        .check("modinfo")
        .unwrap()
        .message
        .contains("khotfix-test-module-key"));
    assert!(r
        .check("rpm-signature")
        .unwrap()
        .message
        .contains("signatures OK"));
}

#[test]
fn each_bad_artifact_fails_its_own_check() {
    let b = built();
    // Unsigned module: trailer and kmod's sig_id both say so.
    let r = verify::verify(&VerifyInputs {
        module: b.unsigned.clone(),
        module_cert: None,
        rpm: None,
        ..inputs(b)
    })
    .unwrap();
    assert_eq!(failed(&r), vec!["signature", "modinfo"], "{r:#?}");
    assert_eq!(outcome(&r, "vermagic"), Outcome::Pass);
    // Another kernel.
    let r = verify::verify(&VerifyInputs {
        kernel: "6.1.0-1-amd64".into(),
        modules_dir: None,
        ..inputs(b)
    })
    .unwrap();
    assert_eq!(failed(&r), vec!["vermagic", "modinfo"], "{r:#?}");
    assert!(r
        .check("vermagic")
        .unwrap()
        .message
        .contains("not the target kernel 6.1.0-1-amd64"));
    // Signed by someone else.
    let r = verify::verify(&VerifyInputs {
        module_cert: Some(b.other_cert.clone()),
        ..inputs(b)
    })
    .unwrap();
    assert_eq!(failed(&r), vec!["signature-valid"], "{r:#?}");
    // A flipped byte in the module body breaks the signature.
    let tampered = b.root.join("tampered/kpatch-30001.ko");
    std::fs::create_dir_all(tampered.parent().unwrap()).unwrap();
    let mut bytes = std::fs::read(&b.signed).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0xff;
    std::fs::write(&tampered, bytes).unwrap();
    let r = verify::verify(&VerifyInputs {
        module: tampered,
        rpm: None,
        ..inputs(b)
    })
    .unwrap();
    assert!(failed(&r).contains(&"signature-valid"), "{r:#?}");
    // RPMs: unsigned, checked with the wrong key, carrying another module.
    let r = verify::verify(&VerifyInputs {
        rpm: Some(b.rpm_unsigned.clone()),
        ..inputs(b)
    })
    .unwrap();
    assert_eq!(failed(&r), vec!["rpm-signature"], "{r:#?}");
    assert!(
        r.check("rpm-signature")
            .unwrap()
            .message
            .contains("not signed"),
        "{r:#?}"
    );
    let r = verify::verify(&VerifyInputs {
        rpm_key: Some(b.other_key.clone()),
        ..inputs(b)
    })
    .unwrap();
    assert_eq!(failed(&r), vec!["rpm-signature"], "{r:#?}");
    let r = verify::verify(&VerifyInputs {
        rpm: Some(b.rpm_wrong_ko.clone()),
        ..inputs(b)
    })
    .unwrap();
    assert_eq!(failed(&r), vec!["rpm-payload"], "{r:#?}");
    // Not a module at all: a failed check, not a panic.
    let junk = b.root.join("junk.ko");
    std::fs::write(&junk, b"\x7fELF\x02\x01garbage").unwrap();
    let r = verify::verify(&VerifyInputs {
        module: junk,
        rpm: None,
        module_cert: None,
        ..inputs(b)
    })
    .unwrap();
    assert!(failed(&r).contains(&"modinfo-section"), "{r:#?}");
    // Static failures skip the (slow) boot.
    let r = verify::verify(&VerifyInputs {
        module: b.unsigned.clone(),
        boot: true,
        kernel_image: Some(format!("/boot/vmlinuz-{}", b.abi).into()),
        ..inputs(b)
    })
    .unwrap();
    assert_eq!(outcome(&r, "boot"), Outcome::Skip);
}

#[test]
fn elf_modinfo_parser_matches_kmod() {
    let b = built();
    let data = std::fs::read(&b.signed).unwrap();
    let info = khotfix::verify::checks::parse_modinfo(&data).unwrap();
    let kmod = run(Command::new("modinfo")
        .args(["-F", "vermagic"])
        .arg(&b.signed));
    assert_eq!(info.get("vermagic").unwrap().trim(), kmod.trim());
    assert_eq!(info.get("name"), Some("kpatch_30001"));
    assert_eq!(info.get("livepatch"), Some("Y"));
    let objs = khotfix::verify::boot::patched_object_candidates(
        &data,
        Path::new(&format!("/lib/modules/{}", b.abi)),
        "kpatch_30001",
    );
    assert!(objs.contains(&"ip_vs".to_string()), "{objs:?}");
}

/// The orchestrator with the real verify stage: stages before it are
/// orchestrator test stages handing over the real artifacts built above.
#[test]
fn run_boots_the_target_kernel_and_withholds_a_failed_job() {
    let b = built();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("recipes")).unwrap();
    std::fs::create_dir_all(dir.path().join("src/m")).unwrap();
    std::fs::write(dir.path().join("src/m/Kbuild"), "obj-m := kpatch-30001.o\n").unwrap();
    std::fs::write(
        dir.path().join("src/m/livepatch.c"),
        "/* the module is built above */\n",
    )
    .unwrap();
    // Two recipes (one recipe may not publish two targets for one kernel),
    // each with one target for the host's kernel.
    let recipes: Vec<Recipe> = ["good", "unsignedrpm"]
        .iter()
        .map(|t| {
            let rp = dir.path().join(format!("recipes/{t}.toml"));
            std::fs::write(
                &rp,
                format!(
                    "[hotfix]\nid = 30001\nname = \"ipvs\"\nsummary = \"s\"\ndescription = \"d\"\nversion = \"1.0\"\nbackend = \"kbuild\"\n\
                     [[target]]\nname = \"{t}\"\ndistro = \"debian12\"\nkernels = [\"{abi}\"]\nmodule_source = \"src/m\"\n",
                    abi = b.abi
                ),
            )
            .unwrap();
            Recipe::load(&rp).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let plan = Plan::expand(&recipes, &[]).unwrap();
    assert_eq!(plan.jobs.len(), 2);
    let nothing = |_cx: &JobContext| Ok(StageOutput::new());
    // The target kernel as a fetch stage hands it over: here the host's own
    // installed kernel, which the module above was built for (verify never
    // falls back to the host by itself).
    let (image, modules) = (
        PathBuf::from(format!("/boot/vmlinuz-{}", b.abi)),
        PathBuf::from(format!("/lib/modules/{}", b.abi)),
    );
    let abi = b.abi.clone();
    let fetch = move |_cx: &JobContext| {
        let kernel = khotfix::kernel::KernelRelease::parse(&abi).unwrap();
        Ok(StageOutput::of(StageData::Fetch(FetchedKernel::Deb(
            DebKernel {
                kernel,
                root: PathBuf::from("/"),
                headers_dir: modules.join("build"),
                vmlinuz: Some(image.clone()),
                modules_dir: Some(modules.clone()),
                kpatch: None,
                files: Vec::new(),
            },
        ))))
    };
    let signed = b.signed.clone();
    let cert = b.cert.clone();
    let (rpm, rpm_unsigned, key) = (b.rpm.clone(), b.rpm_unsigned.clone(), b.key.clone());
    let published = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let pc = published.clone();
    let p = Pipeline::new()
        .stage(StageKind::Fetch, fetch)
        .stage(StageKind::Prepare, nothing)
        .stage(StageKind::Build, nothing)
        .stage(StageKind::Sign, move |_cx: &JobContext| {
            Ok(StageOutput::of(StageData::Sign(SignOutput {
                module: signed.clone(),
                cert: Some(cert.clone()),
            })))
        })
        .stage(StageKind::Package, move |cx: &JobContext| {
            let r = if cx.job.target == "good" {
                &rpm
            } else {
                &rpm_unsigned
            };
            Ok(StageOutput::of(StageData::Package(PackagedRpm {
                rpm: r.clone(),
                key: key.clone(),
                nevra: "kernel-hotfix-30001".into(),
            })))
        })
        .stage(StageKind::Verify, khotfix::run::wire::verify)
        .publisher(move |rpms: &[PathBuf], s: &RunSettings| {
            pc.lock().unwrap().extend(rpms.iter().cloned());
            Ok(PublishOutput {
                repo: s.repo.clone(),
                client_repo: None,
                detail: serde_json::Value::Null,
            })
        });
    let settings = RunSettings::new(dir.path().join("out"));
    let r = run::run(&p, &recipes, &plan, &Selection::default(), &settings).unwrap();
    let good = r.jobs.iter().find(|j| j.id.contains("-good-")).unwrap();
    let bad = r
        .jobs
        .iter()
        .find(|j| j.id.contains("-unsignedrpm-"))
        .unwrap();
    assert_eq!(
        good.status,
        JobStatus::Passed,
        "{}\n{}",
        r.to_table(),
        r.to_markdown()
    );
    assert_eq!(bad.status, JobStatus::Failed);
    assert_eq!(bad.failed_stage, Some(StageKind::Verify));
    assert!(
        bad.error.as_deref().unwrap().contains("rpm-signature"),
        "{:?}",
        bad.error
    );
    assert_eq!(published.lock().unwrap().len(), 1);

    // The boot test ran and judged the module in the running kernel.
    let report: VerifyReport = serde_json::from_slice(
        &std::fs::read(settings.job_dir(&good.id).join("verify/verify.json")).unwrap(),
    )
    .unwrap();
    for name in [
        "boot",
        "boot-load",
        "livepatch-enabled",
        "livepatch-transition",
        "livepatch-patched",
        "dmesg",
        "unload",
    ] {
        assert_eq!(outcome(&report, name), Outcome::Pass, "{name}: {report:#?}");
    }
    assert!(
        report
            .check("livepatch-patched")
            .unwrap()
            .message
            .contains("ip_vs=1"),
        "{report:#?}"
    );
    let console = std::fs::read_to_string(report.console_log.as_ref().unwrap()).unwrap();
    assert!(console.contains("KHOTFIX-RESULT enabled=1"), "{console}");
    let md = r.to_markdown();
    assert!(md.contains("| livepatch-patched | ✅ pass |"), "{md}");
    assert!(md.contains("| rpm-signature | ❌ fail |"), "{md}");

    // A re-run reuses the verified job (no second boot) and re-verifies the failed one.
    let r2 = run::run(&p, &recipes, &plan, &Selection::default(), &settings).unwrap();
    assert!(r2
        .jobs
        .iter()
        .find(|j| j.id == good.id)
        .unwrap()
        .up_to_date());
    assert_eq!(r2.failed, 1);
}
