//! The qemu harness itself: boot Debian's own kernel (ABI discovered with
//! apt-cache) with ip_vs and its dependencies from modules.dep, run a guest
//! script, and read its results back from the console.

use khotfix::verify::qemu::{boot, debian_kernel_abi, QemuSpec};
use std::time::Duration;

#[test]
fn boots_debian_kernel_with_ip_vs() {
    let abi = debian_kernel_abi().expect("apt-cache depends linux-image-amd64");
    let mut spec = QemuSpec::new(
        format!("/boot/vmlinuz-{abi}"),
        "grep -q '^ip_vs ' /proc/modules && echo KHOTFIX-RESULT ip_vs=loaded\n\
         echo \"KHOTFIX-RESULT osrelease=$(cat /proc/sys/kernel/osrelease)\"\n\
         cat /extra/hello.txt | sed 's/^/KHOTFIX-RESULT hello=/'\n\
         exit 7\n",
    );
    spec.modules_dir = Some(format!("/lib/modules/{abi}").into());
    spec.modules = vec!["ip_vs".into()];
    let dir = tempfile::tempdir().unwrap();
    let hello = dir.path().join("hello.txt");
    std::fs::write(&hello, "world\n").unwrap();
    spec.files.push((hello, "/extra/hello.txt".into()));
    spec.timeout = Duration::from_secs(300);
    let run = boot(&spec).expect("qemu boot");
    assert!(!run.timed_out, "qemu timed out; console:\n{}", run.console);
    assert_eq!(
        run.results.get("ip_vs").map(String::as_str),
        Some("loaded"),
        "console:\n{}",
        run.console
    );
    assert_eq!(
        run.results.get("osrelease").map(String::as_str),
        Some(abi.as_str())
    );
    assert_eq!(run.results.get("hello").map(String::as_str), Some("world"));
    assert_eq!(run.script_exit, Some(7));
}
