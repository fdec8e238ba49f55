//! `khotfix-node`: the node agent alone, for hosts and DaemonSets.
//!
//! Every node of a fleet runs `check`, often on a timer, so process start is
//! what costs: this binary links only the node code of the library (no TLS,
//! HTTP, RPM writer, RSA, PGP, XML; see `tests/node_binary.rs`) and parses its
//! arguments by hand instead of building a clap command tree. The commands
//! are [`khotfix::node::cmd`], which `khotfix node …` runs too.

use khotfix::node::cmd::{self, ApplyArgs, CheckArgs, Format, RunArgs, StatusArgs};
use khotfix::util::exit;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

const USAGE: &str = "\
usage: khotfix-node check  [--recipe FILE] [--root DIR] [--json | --format text|json|prometheus] [--output FILE]
       khotfix-node apply  [--recipe FILE] [--root DIR] [--yes] [--ko FILE] [--timeout SECS] [--json]
       khotfix-node status [--root DIR] [--json]
       khotfix-node run    [--root DIR] [--apply] [--metrics FILE] [--timeout SECS]

check   does this node need the hotfix? exit 0 not affected/fixed/being applied,
        1 needs the hotfix, 3 affected but cannot be hot-fixed, 2 error.
        --format prometheus writes node_exporter textfile metrics (without
        --recipe: for every recipe in <root>/etc/khotfix/recipes).
apply   install the hotfix (or load --ko) and wait for the livepatch; dry run
        unless --yes. exit 0 live, 1 dry run of a needed hotfix, 2 error, 3 unfixable.
status  loaded livepatches and installed hotfix packages (like kpatch list).
run     the periodic run (khotfix-node.service): check every installed recipe,
        with --apply install the hotfixes that are needed, then write the
        metrics to --metrics FILE. exit as check (2 if any recipe failed).
";

/// A command line that is not understood: one line, exit 2.
struct Usage(String);

/// The arguments after the subcommand, as `--name value` pairs and flags.
struct Args {
    rest: std::vec::IntoIter<OsString>,
}

impl Args {
    /// The next option: its name and, for `--name=value`, the value.
    fn next(&mut self) -> Result<Option<(String, Option<OsString>)>, Usage> {
        let Some(a) = self.rest.next() else {
            return Ok(None);
        };
        let Some(s) = a.to_str() else {
            return Err(Usage("an argument is not valid UTF-8".into()));
        };
        if !s.starts_with('-') {
            return Err(Usage(format!("unexpected argument {}", shown(s))));
        }
        Ok(Some(match s.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.into())),
            _ => (s.to_string(), None),
        }))
    }

    fn value(&mut self, name: &str, inline: Option<OsString>) -> Result<OsString, Usage> {
        inline
            .or_else(|| self.rest.next())
            .ok_or_else(|| Usage(format!("{name} needs a value")))
    }
}

fn shown(s: &str) -> String {
    khotfix::node::root::shown(s.as_bytes())
}

fn flag(name: &str, inline: Option<OsString>, seen: &mut bool) -> Result<(), Usage> {
    if inline.is_some() {
        return Err(Usage(format!("{name} takes no value")));
    }
    if std::mem::replace(seen, true) {
        return Err(Usage(format!("{name} given twice")));
    }
    Ok(())
}

fn once(name: &str, slot: &mut Option<OsString>, v: OsString) -> Result<(), Usage> {
    if slot.replace(v).is_some() {
        return Err(Usage(format!("{name} given twice")));
    }
    Ok(())
}

fn check_args(mut a: Args) -> Result<CheckArgs, Usage> {
    let (mut recipe, mut root, mut format, mut output) = (None, None, None, None);
    let mut json = false;
    while let Some((k, v)) = a.next()? {
        match k.as_str() {
            "--recipe" => once(&k, &mut recipe, a.value(&k, v)?)?,
            "--root" => once(&k, &mut root, a.value(&k, v)?)?,
            "--format" => once(&k, &mut format, a.value(&k, v)?)?,
            "--output" | "-o" => once(&k, &mut output, a.value(&k, v)?)?,
            "--json" => flag(&k, v, &mut json)?,
            _ => return Err(Usage(format!("check: unknown option {}", shown(&k)))),
        }
    }
    let format = match (json, format) {
        (true, Some(_)) => return Err(Usage("--json and --format exclude each other".into())),
        (true, None) => Format::Json,
        (false, None) => Format::Text,
        (false, Some(f)) => f
            .to_str()
            .unwrap_or("")
            .parse()
            .map_err(|e: String| Usage(format!("--format: {e}")))?,
    };
    Ok(CheckArgs {
        recipe: recipe.map(PathBuf::from),
        root: root.map_or_else(|| PathBuf::from("/"), PathBuf::from),
        format,
        output: output.map(PathBuf::from),
    })
}

fn apply_args(mut a: Args) -> Result<ApplyArgs, Usage> {
    let (mut recipe, mut root, mut ko, mut timeout) = (None, None, None, None);
    let (mut yes, mut json) = (false, false);
    while let Some((k, v)) = a.next()? {
        match k.as_str() {
            "--recipe" => once(&k, &mut recipe, a.value(&k, v)?)?,
            "--root" => once(&k, &mut root, a.value(&k, v)?)?,
            "--ko" => once(&k, &mut ko, a.value(&k, v)?)?,
            "--timeout" => once(&k, &mut timeout, a.value(&k, v)?)?,
            "--yes" | "-y" => flag(&k, v, &mut yes)?,
            "--json" => flag(&k, v, &mut json)?,
            _ => return Err(Usage(format!("apply: unknown option {}", shown(&k)))),
        }
    }
    let timeout = seconds(timeout)?;
    Ok(ApplyArgs {
        recipe: recipe.map(PathBuf::from),
        root: root.map_or_else(|| PathBuf::from("/"), PathBuf::from),
        yes,
        ko: ko.map(PathBuf::from),
        timeout: Duration::from_secs(timeout),
        json,
    })
}

fn status_args(mut a: Args) -> Result<StatusArgs, Usage> {
    let (mut root, mut json) = (None, false);
    while let Some((k, v)) = a.next()? {
        match k.as_str() {
            "--root" => once(&k, &mut root, a.value(&k, v)?)?,
            "--json" => flag(&k, v, &mut json)?,
            _ => return Err(Usage(format!("status: unknown option {}", shown(&k)))),
        }
    }
    Ok(StatusArgs {
        root: root.map_or_else(|| PathBuf::from("/"), PathBuf::from),
        json,
    })
}

fn run_args(mut a: Args) -> Result<RunArgs, Usage> {
    let (mut root, mut metrics, mut timeout) = (None, None, None);
    let mut apply = false;
    while let Some((k, v)) = a.next()? {
        match k.as_str() {
            "--root" => once(&k, &mut root, a.value(&k, v)?)?,
            "--metrics" => once(&k, &mut metrics, a.value(&k, v)?)?,
            "--timeout" => once(&k, &mut timeout, a.value(&k, v)?)?,
            "--apply" => flag(&k, v, &mut apply)?,
            _ => return Err(Usage(format!("run: unknown option {}", shown(&k)))),
        }
    }
    Ok(RunArgs {
        root: root.map_or_else(|| PathBuf::from("/"), PathBuf::from),
        apply,
        metrics: metrics.map(PathBuf::from),
        timeout: Duration::from_secs(seconds(timeout)?),
    })
}

fn seconds(v: Option<OsString>) -> Result<u64, Usage> {
    match v {
        None => Ok(60),
        Some(t) => t
            .to_str()
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(|| Usage("--timeout must be a number of seconds".into())),
    }
}

/// Parse and run; `Err` is a usage error.
fn run(argv: Vec<OsString>) -> Result<anyhow::Result<i32>, Usage> {
    let mut it = argv.into_iter();
    let sub = it.next();
    let args = Args {
        rest: it.collect::<Vec<_>>().into_iter(),
    };
    let sub = sub.as_ref().and_then(|s| s.to_str()).unwrap_or("");
    Ok(match sub {
        "check" => cmd::check(&check_args(args)?),
        "apply" => cmd::apply(&apply_args(args)?),
        "status" => cmd::status(&status_args(args)?),
        "run" => cmd::run(&run_args(args)?),
        "--help" | "-h" | "help" => {
            print!("{USAGE}");
            Ok(exit::OK)
        }
        "--version" | "-V" => {
            println!("khotfix-node {}", env!("CARGO_PKG_VERSION"));
            Ok(exit::OK)
        }
        "" => return Err(Usage("no command given".into())),
        o => return Err(Usage(format!("unknown command {}", shown(o)))),
    })
}

fn main() {
    let code = match run(std::env::args_os().skip(1).collect()) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            cmd::print_error(&e);
            exit::ERROR
        }
        Err(Usage(msg)) => {
            eprintln!("khotfix-node: error: {msg} (see khotfix-node --help)");
            exit::ERROR
        }
    };
    std::process::exit(code);
}
