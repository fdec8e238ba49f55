//! The node commands run by both binaries that ship them: `khotfix node …`
//! (the toolchain) and `khotfix-node …` (the node agent alone). Tests run
//! every node command through both and require the same exit code, stdout
//! and stderr, so the verdicts cannot drift between them.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

pub const KHOTFIX: &str = env!("CARGO_BIN_EXE_khotfix");
pub const KHOTFIX_NODE: &str = env!("CARGO_BIN_EXE_khotfix-node");

/// `khotfix node` and `khotfix-node`, each ready for a node subcommand.
pub fn node_commands() -> [Command; 2] {
    let mut a = Command::new(KHOTFIX);
    a.arg("node");
    [a, Command::new(KHOTFIX_NODE)]
}

/// Names for messages, in the order of [`node_commands`].
pub const NAMES: [&str; 2] = ["khotfix node", "khotfix-node"];

/// Assert two runs agree on exit code, stdout and stderr.
pub fn assert_agree(a: &Output, b: &Output) {
    let show = |o: &Output| {
        format!(
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert!(
        a.status.code() == b.status.code() && a.stdout == b.stdout && a.stderr == b.stderr,
        "the two binaries disagree:\n== {}: {}\n== {}: {}",
        NAMES[0],
        show(a),
        NAMES[1],
        show(b)
    );
}

/// A node command run by both binaries (same arguments and environment);
/// [`Both::output`] asserts they agree and returns the output.
pub struct Both {
    cmds: [Command; 2],
}

/// Start a node command (`check`, `apply`, `status` and their arguments).
pub fn both() -> Both {
    Both {
        cmds: node_commands(),
    }
}

impl Both {
    pub fn arg(&mut self, a: impl AsRef<OsStr>) -> &mut Self {
        for c in &mut self.cmds {
            c.arg(a.as_ref());
        }
        self
    }
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self.arg(a);
        }
        self
    }
    pub fn env(&mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> &mut Self {
        for c in &mut self.cmds {
            c.env(k.as_ref(), v.as_ref());
        }
        self
    }
    pub fn output(&mut self) -> std::io::Result<Output> {
        let a = self.cmds[0].output()?;
        let b = self.cmds[1].output()?;
        assert_agree(&a, &b);
        Ok(a)
    }
}

/// For commands that change the root (`apply --yes`): run `khotfix node`
/// on `root` and `khotfix-node` on a copy of it made beforehand (`cp -a`),
/// with the arguments `args(root)`; the copy's path in the second output is
/// replaced by `root`'s before the two are compared. Returns the first.
pub fn output_on_copies(
    root: &Path,
    args: impl Fn(&Path) -> Vec<std::ffi::OsString>,
    setup: impl Fn(&mut Command),
) -> Output {
    let copy = tempfile::tempdir().unwrap();
    let copy_root = copy.path().join("root");
    let st = Command::new("cp")
        .arg("-a")
        .arg(root)
        .arg(&copy_root)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {}", root.display());
    let [mut a, mut b] = node_commands();
    a.args(args(root));
    b.args(args(&copy_root));
    setup(&mut a);
    setup(&mut b);
    let out_a = a.output().unwrap();
    let mut out_b = b.output().unwrap();
    let from = copy_root.to_string_lossy().into_owned();
    let to = root.to_string_lossy().into_owned();
    let fix = |v: &[u8]| String::from_utf8_lossy(v).replace(&from, &to).into_bytes();
    out_b.stdout = fix(&out_b.stdout);
    out_b.stderr = fix(&out_b.stderr);
    assert_agree(&out_a, &out_b);
    out_a
}
