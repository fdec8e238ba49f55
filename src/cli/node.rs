//! `khotfix node check|apply|status|script|daemonset`. check, apply and
//! status run [`khotfix::node::cmd`], the code the `khotfix-node` binary runs.
use clap::Subcommand;
use khotfix::node::{
    self,
    cmd::{ApplyArgs, CheckArgs, Format, RunArgs, StatusArgs},
    daemonset::DaemonSetOptions,
};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand)]
pub enum NodeCmd {
    /// Does this node need the hotfix? Exit 0 not affected/fixed/being applied,
    /// 1 needs the hotfix, 3 affected but cannot be hot-fixed, 2 error.
    Check {
        /// Recipe (default: the single one in <root>/etc/khotfix/recipes/).
        #[arg(long)]
        recipe: Option<PathBuf>,
        /// Read the host (/proc, /sys, rpm database) under this directory.
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Same as --format json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// text, json, or prometheus (node_exporter textfile metrics; without
        /// --recipe: every installed recipe).
        #[arg(long, default_value = "text")]
        format: Format,
        /// Write the output to this file atomically (e.g. into the
        /// node_exporter textfile directory).
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// Loaded livepatches (enabled, transition, patched objects) and installed
    /// hotfix packages with their kernels, like `kpatch list`.
    Status {
        #[arg(long, default_value = "/")]
        root: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The periodic run (khotfix-node.service): check every installed recipe,
    /// with --apply install the hotfixes that are needed, write --metrics.
    Run {
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Install the hotfixes that are needed (default: check only).
        #[arg(long)]
        apply: bool,
        /// node_exporter textfile metrics file, written atomically.
        #[arg(long)]
        metrics: Option<PathBuf>,
        /// Seconds to wait for each livepatch transition.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Install the hotfix (or load a .ko) and wait for the livepatch; dry run
    /// unless --yes. Exit 0 live, 1 dry run of a needed hotfix, 2 error, 3 unfixable.
    Apply {
        #[arg(long)]
        recipe: Option<PathBuf>,
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Act (default: print what would be done).
        #[arg(long, short = 'y')]
        yes: bool,
        /// Load this livepatch module instead of installing the package.
        #[arg(long)]
        ko: Option<PathBuf>,
        /// Seconds to wait for the livepatch transition.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        #[arg(long)]
        json: bool,
    },
    /// Build the signed `khotfix-node` RPM (binary, systemd service and timer,
    /// recipes as config) for one distro; publish it with `khotfix publish`.
    Package {
        /// Recipes installed as /etc/khotfix/recipes/<file name>.
        #[arg(long = "recipe")]
        recipes: Vec<PathBuf>,
        /// Built-in distro whose dist tag the release carries (its part of
        /// the repository), e.g. alinux3.
        #[arg(long)]
        distro: String,
        /// The khotfix-node binary (default: the one next to this khotfix).
        #[arg(long)]
        binary: Option<PathBuf>,
        #[arg(long, default_value = "x86_64")]
        arch: String,
        /// Armored OpenPGP secret key (RSA) that signs the package.
        #[arg(long, env = "KHOTFIX_PGP_KEY")]
        pgp_key: PathBuf,
        /// File holding the OpenPGP key's passphrase (else KHOTFIX_SIGN_PASSPHRASE).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Where the RPM goes.
        #[arg(long, default_value = "khotfix-rpms")]
        out_dir: PathBuf,
        /// Payload compression: xz or gzip.
        #[arg(long, default_value = "xz")]
        compression: khotfix::package::Compression,
    },
    /// Build a minimal OCI image (FROM scratch) holding the static
    /// khotfix-node binary alone, with the container engine.
    Image {
        /// The static khotfix-node binary (default: the one next to this khotfix).
        #[arg(long)]
        binary: Option<PathBuf>,
        #[arg(long, default_value = "khotfix-node:latest")]
        tag: String,
        /// Container engine.
        #[arg(long, env = "KHOTFIX_CONTAINER_ENGINE", default_value = "podman")]
        engine: String,
        /// Print the Containerfile and the build command only.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a standalone POSIX sh script with the same check/apply logic.
    Script {
        recipe: PathBuf,
        /// Write to this file (mode 0755) instead of stdout.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// Print a Kubernetes DaemonSet (+ RBAC, ConfigMap) that labels every node
    /// with its verdict: khotfix.io/hotfix-<id>=...
    Daemonset {
        recipe: PathBuf,
        /// Also install the hotfix on nodes that need it.
        #[arg(long)]
        apply: bool,
        /// Image with sh, awk, chroot, kubectl and head, od, tr, wc, readlink,
        /// mktemp (coreutils or busybox), from your own registry (the
        /// default is an unqualified name you are expected to provide).
        #[arg(long, default_value = "khotfix-node-agent:latest")]
        image: String,
        #[arg(long, default_value = "kube-system")]
        namespace: String,
        /// Seconds between checks.
        #[arg(long, default_value_t = 3600)]
        interval: u64,
    },
}

/// `khotfix node check [--recipe R] [--root DIR] [--json]` without clap, for
/// speed and memory on nodes. Returns `None` (fall back to clap, which also
/// gives help and errors) for anything else, including `--flag=value` forms.
pub fn fast_check(args: impl Iterator<Item = std::ffi::OsString>) -> Option<i32> {
    let args: Vec<std::ffi::OsString> = args.collect();
    if args.len() < 2 || args[0] != "node" || args[1] != "check" {
        return None;
    }
    let (mut recipe, mut root, mut json) = (None, PathBuf::from("/"), false);
    let mut it = args[2..].iter();
    while let Some(a) = it.next() {
        match a.to_str()? {
            "--recipe" if recipe.is_none() => recipe = Some(PathBuf::from(it.next()?)),
            "--root" => root = PathBuf::from(it.next()?),
            "--json" if !json => json = true,
            _ => return None,
        }
    }
    let format = if json { Format::Json } else { Format::Text };
    let check = NodeCmd::Check {
        recipe,
        root,
        json: false,
        format,
        output: None,
    };
    Some(match node(check) {
        Ok(code) => code,
        Err(e) => {
            node::cmd::print_error(&e);
            khotfix::util::exit::ERROR
        }
    })
}

pub fn node(c: NodeCmd) -> anyhow::Result<i32> {
    match c {
        NodeCmd::Check {
            recipe,
            root,
            json,
            format,
            output,
        } => node::cmd::check(&CheckArgs {
            recipe,
            root,
            format: if json { Format::Json } else { format },
            output,
        }),
        NodeCmd::Status { root, json } => node::cmd::status(&StatusArgs { root, json }),
        NodeCmd::Run {
            root,
            apply,
            metrics,
            timeout,
        } => node::cmd::run(&RunArgs {
            root,
            apply,
            metrics,
            timeout: Duration::from_secs(timeout),
        }),
        NodeCmd::Apply {
            recipe,
            root,
            yes,
            ko,
            timeout,
            json,
        } => node::cmd::apply(&ApplyArgs {
            recipe,
            root,
            yes,
            ko,
            timeout: Duration::from_secs(timeout),
            json,
        }),
        NodeCmd::Package {
            recipes,
            distro,
            binary,
            arch,
            pgp_key,
            passphrase_file,
            out_dir,
            compression,
        } => {
            let binary = match binary {
                Some(b) => b,
                None => std::env::current_exe()?.with_file_name("khotfix-node"),
            };
            if !binary.is_file() {
                anyhow::bail!(
                    "{}: no khotfix-node binary (build it with `cargo build --profile node --bin khotfix-node`, or give --binary)",
                    binary.display()
                );
            }
            let distro = khotfix::distro::Distro::builtin(&distro)?;
            let pass = khotfix::keys::read_passphrase(passphrase_file.as_deref())?;
            let signer = khotfix::keys::PackageSigner::load(&pgp_key, pass.as_ref())?;
            let input = khotfix::package::node_rpm::NodePackageInput {
                binary,
                recipes,
                version: env!("CARGO_PKG_VERSION").to_string(),
                rpm_dist: distro.rpm_dist.clone(),
                arch,
            };
            let opts = khotfix::package::BuildOptions {
                compression,
                ..khotfix::package::BuildOptions::from_env()?
            };
            let path =
                khotfix::package::node_rpm::build_node_rpm(&input, &signer, &out_dir, &opts)?;
            println!("wrote {}", path.display());
            Ok(khotfix::util::exit::OK)
        }
        NodeCmd::Image {
            binary,
            tag,
            engine,
            dry_run,
        } => {
            let binary = match binary {
                Some(b) => b,
                None => std::env::current_exe()?.with_file_name("khotfix-node"),
            };
            node::image::build(&binary, &tag, &engine, dry_run)?;
            Ok(khotfix::util::exit::OK)
        }
        NodeCmd::Script { recipe, output } => {
            let recipe = node::check::load_recipe(&recipe)?;
            let text = node::script::generate(&recipe)?;
            match output {
                Some(p) => {
                    khotfix::util::fsx::write_atomic(&p, text.as_bytes())?;
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
                }
                None => print!("{text}"),
            }
            Ok(khotfix::util::exit::OK)
        }
        NodeCmd::Daemonset {
            recipe,
            apply,
            image,
            namespace,
            interval,
        } => {
            let recipe = node::check::load_recipe(&recipe)?;
            let opts = DaemonSetOptions {
                apply,
                image,
                namespace,
                interval_secs: interval,
            };
            print!("{}", node::daemonset::manifest(&recipe, &opts)?);
            Ok(khotfix::util::exit::OK)
        }
    }
}
