//! The kpatch release the builder images compile kpatch-build from.
//!
//! kpatch-build is in no distro's package archive at the version we need
//! (and not at all for CentOS 7.7's gcc), so every builder image compiles it
//! from one pinned upstream release. The image build never clones: it gets a
//! source tarball from one of, in order,
//!
//! 1. `khotfix builder build --kpatch-source FILE` (or `run`/`build`'s
//!    first-use image build with the same setting),
//! 2. `$KHOTFIX_KPATCH_SOURCE`,
//! 3. `kpatch_source = "FILE"` under `[build]` in the config file,
//! 4. a download of the release's archive from upstream into the fetch cache
//!    (connected machines).
//!
//! Air-gapped build farms use 1–3. Whatever the origin, the tarball is
//! accepted only if its *uncompressed* tar stream has the pinned sha256: the
//! stream `git archive --prefix=kpatch-<v>/ <tag>` writes is a function of
//! the commit alone, while the gzip around it differs between hosts and
//! tools. The pax header's commit id (`git get-tar-commit-id`) is checked too,
//! so a mismatch says which commit the file really is.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Environment variable naming a local kpatch source tarball.
pub const ENV_KPATCH_SOURCE: &str = "KHOTFIX_KPATCH_SOURCE";

/// One pinned upstream release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KpatchRelease {
    pub version: &'static str,
    pub tag: &'static str,
    pub commit: &'static str,
    /// sha256 of the uncompressed `git archive --prefix=kpatch-<version>/` tar.
    pub tar_sha256: &'static str,
    pub url: &'static str,
}

/// kpatch v0.9.11 (2025-10-28): the last upstream release; supports the
/// 3.10 (EL7), 5.10 (Alibaba Cloud Linux 3) and 6.1 (Debian 12) kernels.
pub const PINNED: KpatchRelease = KpatchRelease {
    version: "0.9.11",
    tag: "v0.9.11",
    commit: "bea635fbbeb11c5f0f5c0d4ffce34c2e9d2e8a6a",
    tar_sha256: "72eb178b1a0c97d081ff089b4ca0e28874c8b1755a828a52f2e4507501db3701",
    url: "https://github.com/dynup/kpatch/archive/refs/tags/v0.9.11.tar.gz",
};

/// The file name the tarball has in an image's build context.
pub const CONTEXT_FILE: &str = "kpatch-source.tar.gz";

/// What a verified tarball is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KpatchSource {
    pub path: PathBuf,
    pub commit: String,
}

/// Check `path` against `release`: gzip-compressed tar whose uncompressed
/// stream has the pinned digest.
pub fn verify(path: &Path, release: &KpatchRelease) -> Result<KpatchSource> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("kpatch source {}: cannot open", path.display()))?;
    let mut tar = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(f));
    let mut first = [0u8; 1024];
    tar.read_exact(&mut first).map_err(|e| {
        anyhow::anyhow!(
            "kpatch source {}: not a gzip-compressed tar ({e})",
            path.display()
        )
    })?;
    let commit = pax_commit(&first).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(first);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = tar
            .read(&mut buf)
            .with_context(|| format!("kpatch source {}: reading", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let got = hex::encode(h.finalize());
    if got != release.tar_sha256 {
        let which = if commit.is_empty() {
            "no commit id in its pax header".to_string()
        } else {
            format!("commit {commit}")
        };
        bail!(
            "kpatch source {}: is not kpatch {} ({which}; uncompressed tar sha256 {got}, expected {} of commit {})",
            path.display(),
            release.tag,
            release.tar_sha256,
            release.commit
        );
    }
    if commit != release.commit {
        bail!(
            "kpatch source {}: tar digest matches but its pax header names commit {commit:?}, expected {}",
            path.display(),
            release.commit
        );
    }
    Ok(KpatchSource {
        path: path.to_path_buf(),
        commit,
    })
}

/// The commit id `git archive` records in the pax global header
/// (`52 comment=<40 hex>\n`), if the first record is one.
fn pax_commit(first: &[u8; 1024]) -> Option<String> {
    if first[156] != b'g' {
        return None;
    }
    let body = std::str::from_utf8(&first[512..]).ok()?;
    let rec = body.split('\n').next()?;
    let (_, kv) = rec.split_once(' ')?;
    let id = kv.strip_prefix("comment=")?;
    (id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

/// Where the tarball comes from (see the module doc), without downloading.
pub fn configured(explicit: Option<&Path>, config: Option<&Path>) -> Option<PathBuf> {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| {
            std::env::var_os(ENV_KPATCH_SOURCE)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| config.map(Path::to_path_buf))
}

/// A verified tarball of the pinned release: the configured file, else a
/// download into `cache_dir/kpatch/` (kept for later image builds).
pub fn resolve(
    explicit: Option<&Path>,
    config: Option<&Path>,
    cache_dir: &Path,
) -> Result<KpatchSource> {
    if let Some(p) = configured(explicit, config) {
        return verify(&p, &PINNED);
    }
    let dir = cache_dir.join("kpatch");
    let dest = dir.join(format!("kpatch-{}.tar.gz", PINNED.version));
    if dest.is_file() {
        if let Ok(s) = verify(&dest, &PINNED) {
            return Ok(s);
        }
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    download(PINNED.url, tmp.path()).with_context(|| {
        format!(
            "downloading kpatch {} (offline? pass --kpatch-source FILE or set ${ENV_KPATCH_SOURCE})",
            PINNED.tag
        )
    })?;
    verify(tmp.path(), &PINNED)?;
    tmp.persist(&dest)
        .with_context(|| format!("storing {}", dest.display()))?;
    Ok(KpatchSource {
        path: dest,
        commit: PINNED.commit.into(),
    })
}

fn download(url: &str, dest: &Path) -> Result<()> {
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(20))
        .timeout(std::time::Duration::from_secs(300))
        .build()?;
    let mut resp = client.get(url).send()?.error_for_status()?;
    let mut f = std::fs::File::create(dest)?;
    std::io::copy(&mut resp, &mut f)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_commit_is_read_from_the_global_header() {
        let mut b = [0u8; 1024];
        b[156] = b'g';
        let rec = format!("52 comment={}\n", PINNED.commit);
        b[512..512 + rec.len()].copy_from_slice(rec.as_bytes());
        assert_eq!(pax_commit(&b).as_deref(), Some(PINNED.commit));
        b[156] = b'0';
        assert_eq!(pax_commit(&b), None);
    }

    #[test]
    fn a_file_that_is_not_the_release_is_refused_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k.tar.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, &[0u8; 2048]).unwrap();
        std::fs::write(&p, enc.finish().unwrap()).unwrap();
        let e = verify(&p, &PINNED).unwrap_err().to_string();
        assert!(
            e.contains("k.tar.gz") && e.contains("is not kpatch v0.9.11"),
            "{e}"
        );
        std::fs::write(&p, b"plain").unwrap();
        let e = verify(&p, &PINNED).unwrap_err().to_string();
        assert!(e.contains("not a gzip-compressed tar"), "{e}");
    }
}
