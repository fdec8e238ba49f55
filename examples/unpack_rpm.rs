//! `unpack_rpm RPM DEST`: unpack with khotfix's safe unpacker (used by
//! benches/prepare.sh to compare against `rpm2cpio | cpio -idm`).
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: unpack_rpm RPM DEST");
        std::process::exit(2);
    }
    match khotfix::prepare::srpm::unpack_rpm(
        std::path::Path::new(&args[1]),
        std::path::Path::new(&args[2]),
    ) {
        Ok(u) => println!("{} entries", u.entries.len()),
        Err(e) => {
            eprintln!("unpack_rpm: {e}");
            std::process::exit(1);
        }
    }
}
