//! `apply_check TREE PATCH...`: khotfix's fail-fast patch check (used by
//! benches/prepare.sh to compare against `patch --dry-run`).
fn main() {
    let args: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    if args.len() < 2 {
        eprintln!("usage: apply_check TREE PATCH...");
        std::process::exit(2);
    }
    match khotfix::prepare::apply::check(&args[0], &args[1..]) {
        Ok(r) => println!("{} patch(es) apply", r.patches.len()),
        Err(e) => {
            eprintln!("apply_check: {e}");
            std::process::exit(1);
        }
    }
}
