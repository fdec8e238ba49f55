//! The boot check: boot the target kernel under qemu (TCG) with the built
//! module and the modules of the objects it patches, load it, read
//! `/sys/kernel/livepatch/<mod>`, scan dmesg, then disable and unload.
//!
//! The guest script ([`guest_script`]) only reports facts as
//! `KHOTFIX-RESULT key=value` lines; judging them is done on the host by
//! [`evaluate`], which is plain Rust and unit-tested without a VM.

use super::{checks, qemu, Check};
use crate::util::validate;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the module is put in the guest.
pub const GUEST_DIR: &str = "/khotfix";

/// One boot test.
#[derive(Debug, Clone)]
pub struct BootRequest {
    pub kernel_image: PathBuf,
    pub modules_dir: PathBuf,
    /// The signed livepatch module (host path).
    pub module: PathBuf,
    /// Its loaded name (`kpatch_30001`): the `/sys/kernel/livepatch` entry.
    pub module_name: String,
    pub console_log: Option<PathBuf>,
    pub timeout: Duration,
}

/// Seconds the guest waits for a livepatch transition to finish.
const TRANSITION_WAIT: u32 = 60;

/// The guest script. `module_name` and `module_file` must be validated
/// identifiers / file names (they are quoted anyway).
pub fn guest_script(module_name: &str, module_file: &str) -> String {
    let m = validate::sh_quote(module_name);
    let ko = validate::sh_quote(&format!("{GUEST_DIR}/{module_file}"));
    format!(
        r#"# khotfix verify: load the livepatch, report its state, unload it.
M={m}
KO={ko}
L=/sys/kernel/livepatch/$M
r() {{ echo "KHOTFIX-RESULT $1=$2"; }}
wait_transition() {{
    i=0
    while [ -d "$L" ] && [ "$(cat "$L/transition" 2>/dev/null)" != 0 ] && [ $i -lt {TRANSITION_WAIT} ]; do
        sleep 1; i=$((i + 1))
    done
}}
dmesg > /tmp/dmesg.before 2>/dev/null
insmod "$KO"
r insmod $?
wait_transition
r enabled "$(cat "$L/enabled" 2>/dev/null || echo missing)"
r transition "$(cat "$L/transition" 2>/dev/null || echo missing)"
for d in "$L"/*/; do
    [ -f "$d/patched" ] || continue
    o=$(basename "$d")
    r "patched.$o" "$(cat "$d/patched")"
done
sleep 3
dmesg > /tmp/dmesg.loaded 2>/dev/null
r call_traces "$(grep -c 'Call Trace' /tmp/dmesg.loaded)"
r bugs "$(grep -c 'BUG' /tmp/dmesg.loaded)"
grep -E 'Call Trace|BUG' /tmp/dmesg.loaded | head -n 3 | while read -r line; do r bad_line "$line"; done
if echo 0 > "$L/enabled"; then r disable 0; else r disable 1; fi
wait_transition
if [ -d "$L" ]; then r disabled_transition "$(cat "$L/transition" 2>/dev/null)"; else r disabled_transition 0; fi
rmmod "$M"
r rmmod $?
if [ -d "/sys/module/$M" ]; then r unloaded 0; else r unloaded 1; fi
dmesg > /tmp/dmesg.after 2>/dev/null
r call_traces_after "$(grep -c 'Call Trace' /tmp/dmesg.after)"
r bugs_after "$(grep -c 'BUG' /tmp/dmesg.after)"
r "done" 1
"#
    )
}

/// Judge the guest's results. `objects` are the klp objects the host
/// expected to load (besides vmlinux); every object directory the kernel
/// created must report `patched` 1.
pub fn evaluate(
    results: &BTreeMap<String, String>,
    timed_out: bool,
    module_name: &str,
) -> Vec<Check> {
    let get = |k: &str| results.get(k).map(String::as_str);
    let mut out = Vec::new();
    if get("booted") != Some("1") {
        let why = if timed_out {
            "the guest timed out before booting"
        } else {
            "the guest never reached init"
        };
        out.push(Check::fail("boot", why));
        return out;
    }
    out.push(Check::pass("boot", "target kernel booted under qemu (TCG)"));
    if let Some(m) = get("insmod_failed") {
        out.push(Check::fail(
            "boot-objects",
            format!("loading {m} in the guest failed"),
        ));
    }
    match get("insmod") {
        Some("0") => out.push(Check::pass(
            "boot-load",
            format!("insmod {module_name} succeeded"),
        )),
        Some(c) => {
            out.push(Check::fail(
                "boot-load",
                format!("insmod {module_name} exited {c}"),
            ));
            return out;
        }
        None => {
            out.push(Check::fail(
                "boot-load",
                if timed_out {
                    "timed out before insmod"
                } else {
                    "the guest script did not run insmod"
                },
            ));
            return out;
        }
    }
    let exact = |name: &str, key: &str, want: &str, what: &str| match get(key) {
        Some(v) if v == want => Check::pass(name, format!("{what} = {v}")),
        Some(v) => Check::fail(name, format!("{what} = {v}, expected {want}")),
        None => Check::fail(name, format!("{what} was not reported")),
    };
    out.push(exact(
        "livepatch-enabled",
        "enabled",
        "1",
        &format!("/sys/kernel/livepatch/{module_name}/enabled"),
    ));
    out.push(exact(
        "livepatch-transition",
        "transition",
        "0",
        &format!("/sys/kernel/livepatch/{module_name}/transition"),
    ));
    let objects: Vec<(&str, &str)> = results
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("patched.").map(|o| (o, v.as_str())))
        .collect();
    if objects.is_empty() {
        out.push(Check::fail(
            "livepatch-patched",
            "no patched objects under /sys/kernel/livepatch",
        ));
    } else {
        let bad: Vec<String> = objects
            .iter()
            .filter(|(_, v)| *v != "1")
            .map(|(o, v)| format!("{o} patched = {v}"))
            .collect();
        let all: Vec<String> = objects.iter().map(|(o, v)| format!("{o}={v}")).collect();
        if bad.is_empty() {
            out.push(Check::pass(
                "livepatch-patched",
                format!("patched: {}", all.join(", ")),
            ));
        } else {
            out.push(Check::fail(
                "livepatch-patched",
                format!("{} (is the object's module loaded?)", bad.join(", ")),
            ));
        }
    }
    let n = |k: &str| get(k).and_then(|v| v.parse::<u64>().ok());
    match (
        n("call_traces"),
        n("bugs"),
        n("call_traces_after"),
        n("bugs_after"),
    ) {
        (Some(0), Some(0), Some(0), Some(0)) => out.push(Check::pass(
            "dmesg",
            "no \"Call Trace\" or \"BUG\" while loaded and after unload",
        )),
        (Some(a), Some(b), c, d) => {
            let first = get("bad_line").unwrap_or("");
            out.push(Check::fail(
                "dmesg",
                format!(
                    "dmesg has {a} \"Call Trace\" and {b} \"BUG\" line(s) while loaded ({} / {} after unload): {first}",
                    c.map_or("?".into(), |v| v.to_string()),
                    d.map_or("?".into(), |v| v.to_string())
                ),
            ))
        }
        _ => out.push(Check::fail("dmesg", "dmesg counts were not reported")),
    }
    let unload_ok = get("disable") == Some("0")
        && get("disabled_transition") == Some("0")
        && get("rmmod") == Some("0")
        && get("unloaded") == Some("1");
    if unload_ok {
        out.push(Check::pass(
            "unload",
            "disabled, transition finished, module removed",
        ));
    } else {
        out.push(Check::fail(
            "unload",
            format!(
                "disable={} transition={} rmmod={} unloaded={}",
                get("disable").unwrap_or("?"),
                get("disabled_transition").unwrap_or("?"),
                get("rmmod").unwrap_or("?"),
                get("unloaded").unwrap_or("?")
            ),
        ));
    }
    if get("done") != Some("1") {
        out.push(Check::fail(
            "boot-script",
            if timed_out {
                "the guest timed out before the script finished"
            } else {
                "the guest script did not finish"
            },
        ));
    }
    out
}

/// Module names in the target's `modules.dep`.
pub fn known_modules(modules_dir: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(modules_dir.join("modules.dep")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(p, _)| {
            let f = p.rsplit('/').next().unwrap_or(p);
            f.split(".ko").next().unwrap_or(f).replace('-', "_")
        })
        .collect()
}

/// The modules to load before the livepatch: the klp object names found in
/// the module's strings (`.name = "ip_vs"` ends up in `.rodata`) that are
/// modules of the target kernel, plus the module's `depends=`.
pub fn patched_object_candidates(
    module_bytes: &[u8],
    modules_dir: &Path,
    own_name: &str,
) -> Vec<String> {
    let known = known_modules(modules_dir);
    let mut want: BTreeSet<String> = BTreeSet::new();
    if let Ok(strings) = checks::module_strings(module_bytes) {
        for s in strings {
            let n = s.replace('-', "_");
            if n != own_name && known.contains(&n) {
                want.insert(n);
            }
        }
    }
    if let Ok(info) = checks::parse_modinfo(module_bytes) {
        for d in info.all("depends") {
            for m in d.split(',').filter(|m| !m.is_empty()) {
                let n = m.replace('-', "_");
                if known.contains(&n) {
                    want.insert(n);
                }
            }
        }
    }
    want.into_iter().collect()
}

/// Boot and judge. Never errors: a harness failure is a failed `boot` check.
pub fn boot_check(req: &BootRequest, module_bytes: &[u8]) -> Vec<Check> {
    if let Err(e) = validate::identifier("module name", &req.module_name) {
        return vec![Check::fail("boot", e)];
    }
    let Some(file) = req
        .module
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
    else {
        return vec![Check::fail(
            "boot",
            format!("module path {} has no file name", req.module.display()),
        )];
    };
    if let Err(e) = validate::package_token("module file name", &file) {
        return vec![Check::fail("boot", e)];
    }
    let objects = patched_object_candidates(module_bytes, &req.modules_dir, &req.module_name);
    let mut spec = qemu::QemuSpec::new(&req.kernel_image, guest_script(&req.module_name, &file));
    spec.modules_dir = Some(req.modules_dir.clone());
    spec.modules = objects.clone();
    spec.files
        .push((req.module.clone(), format!("{GUEST_DIR}/{file}")));
    spec.timeout = req.timeout;
    spec.log = req.console_log.clone();
    match qemu::boot(&spec) {
        Ok(run) => {
            let mut checks = evaluate(&run.results, run.timed_out, &req.module_name);
            if !objects.is_empty() {
                if let Some(c) = checks.iter_mut().find(|c| c.name == "boot") {
                    c.message
                        .push_str(&format!(" with {} loaded first", objects.join(", ")));
                }
            }
            checks.push(Check::pass(
                "boot-time",
                format!("{:.1}s", run.elapsed.as_secs_f64()),
            ));
            checks
        }
        Err(e) => vec![Check::fail("boot", format!("{e:#}"))],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Outcome;

    fn good() -> BTreeMap<String, String> {
        [
            ("booted", "1"),
            ("insmod", "0"),
            ("enabled", "1"),
            ("transition", "0"),
            ("patched.ip_vs", "1"),
            ("call_traces", "0"),
            ("bugs", "0"),
            ("disable", "0"),
            ("disabled_transition", "0"),
            ("rmmod", "0"),
            ("unloaded", "1"),
            ("call_traces_after", "0"),
            ("bugs_after", "0"),
            ("done", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn failed(c: &[Check]) -> Vec<&str> {
        c.iter()
            .filter(|c| c.outcome == Outcome::Fail)
            .map(|c| c.name.as_str())
            .collect()
    }

    #[test]
    fn all_good_passes() {
        let c = evaluate(&good(), false, "kpatch_1");
        assert!(failed(&c).is_empty(), "{c:?}");
        assert!(c
            .iter()
            .any(|c| c.name == "livepatch-patched" && c.message.contains("ip_vs=1")));
    }

    #[test]
    fn each_bad_fact_fails_its_check() {
        for (k, v, check) in [
            ("enabled", "0", "livepatch-enabled"),
            ("transition", "1", "livepatch-transition"),
            ("patched.ip_vs", "0", "livepatch-patched"),
            ("call_traces", "2", "dmesg"),
            ("bugs_after", "1", "dmesg"),
            ("rmmod", "1", "unload"),
            ("unloaded", "0", "unload"),
        ] {
            let mut r = good();
            r.insert(k.into(), v.into());
            assert_eq!(
                failed(&evaluate(&r, false, "kpatch_1")),
                vec![check],
                "{k}={v}"
            );
        }
    }

    #[test]
    fn no_boot_or_failed_insmod_stops_early() {
        let c = evaluate(&BTreeMap::new(), true, "m");
        assert_eq!(failed(&c), vec!["boot"]);
        assert!(c[0].message.contains("timed out"));
        let mut r = good();
        r.insert("insmod".into(), "1".into());
        assert_eq!(failed(&evaluate(&r, false, "m")), vec!["boot-load"]);
        let mut r = good();
        r.retain(|k, _| !k.starts_with("patched."));
        assert_eq!(failed(&evaluate(&r, false, "m")), vec!["livepatch-patched"]);
    }

    #[test]
    fn script_quotes_names_and_shellchecks() {
        let s = guest_script("kpatch_30001", "kpatch-30001.ko");
        assert!(s.contains("M=kpatch_30001\n"));
        assert!(s.contains("KO=/khotfix/kpatch-30001.ko\n"));
        let s2 = guest_script("a'b", "x y.ko");
        assert!(s2.contains("M='a'\\''b'"));
        // shellcheck (installed here and in CI) must find nothing to warn about.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.sh");
        std::fs::write(&p, format!("#!/bin/sh\n{s}")).unwrap();
        match crate::util::proc::process("shellcheck")
            .args(["-s", "sh"])
            .arg(&p)
            .output()
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => eprintln!("skipped: shellcheck is not installed"),
            Err(e) => panic!("{e}"),
        }
    }
}
