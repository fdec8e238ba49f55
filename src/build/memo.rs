//! Answers of slow host queries, remembered under a fingerprint of the files
//! that decide them.
//!
//! A build served from the cache should take well under a second, but two
//! questions asked on every run cost seconds: `apt-cache depends
//! linux-image-amd64` (apt re-parses every package list when, as on Debian's
//! container images, its binary cache is switched off) and `podman image
//! inspect` of the builder image (starting the engine client). Both answers
//! are functions of a few files on disk: apt's lists, dpkg's status and apt's
//! preferences; the engine's image store index. So each answer is stored with
//! the (size, mtime, ctime, inode) of those "witness" files, taken *before*
//! the query ran, and reused while every witness is unchanged. Any change to
//! a witness (an `apt-get update`, a rebuilt or re-tagged image) makes the
//! memo miss and the real tool runs again. When the witnesses cannot be found
//! (an unusual apt layout, docker's containerd store), nothing is remembered
//! and the tool runs every time: the memo only ever saves time.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One witness file and its stamp (`None`: it did not exist).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Witness {
    pub path: PathBuf,
    pub stamp: Option<(u64, i64, i64, i64, i64, u64)>,
}

impl Witness {
    pub fn of(path: &Path) -> Witness {
        let stamp = std::fs::symlink_metadata(path).ok().map(|m| {
            (
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
                m.ino(),
            )
        });
        Witness {
            path: path.to_path_buf(),
            stamp,
        }
    }

    fn unchanged(&self) -> bool {
        Witness::of(&self.path).stamp == self.stamp
    }
}

/// The witnesses of a directory: the directory itself (entries added or
/// removed) and every entry in it.
pub fn dir_witnesses(dir: &Path) -> Vec<Witness> {
    let mut w = vec![Witness::of(dir)];
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        w.extend(paths.iter().map(|p| Witness::of(p)));
    }
    w
}

#[derive(Serialize, Deserialize)]
struct Entry {
    query: String,
    witnesses: Vec<Witness>,
    answer: String,
}

/// A directory of remembered answers.
#[derive(Debug, Clone)]
pub struct Memo {
    pub dir: PathBuf,
}

impl Memo {
    pub fn new(dir: impl Into<PathBuf>) -> Memo {
        Memo { dir: dir.into() }
    }

    fn file(&self, query: &str) -> PathBuf {
        self.dir
            .join(format!("{}.json", hex::encode(Sha256::digest(query))))
    }

    /// The remembered answer to `query` while all its witnesses are unchanged.
    pub fn get(&self, query: &str) -> Option<String> {
        let e: Entry = serde_json::from_slice(&std::fs::read(self.file(query)).ok()?).ok()?;
        (e.query == query && e.witnesses.iter().all(Witness::unchanged)).then_some(e.answer)
    }

    /// Remember `answer`; `witnesses` must have been taken before the query
    /// ran. Best effort: an unwritable memo directory only costs time later.
    pub fn put(&self, query: &str, witnesses: Vec<Witness>, answer: &str) {
        let e = Entry {
            query: query.to_string(),
            witnesses,
            answer: answer.to_string(),
        };
        let Ok(bytes) = serde_json::to_vec(&e) else {
            return;
        };
        if std::fs::create_dir_all(&self.dir).is_ok() {
            let _ = crate::util::fsx::write_atomic(&self.file(query), &bytes);
        }
    }

    /// `get`, else run `ask` (with witnesses taken first) and remember its
    /// answer. Without witnesses nothing is remembered.
    pub fn answer(
        &self,
        query: &str,
        witnesses: impl FnOnce() -> Option<Vec<Witness>>,
        ask: impl FnOnce() -> Result<String>,
    ) -> Result<String> {
        if let Some(a) = self.get(query) {
            return Ok(a);
        }
        let w = witnesses();
        let a = ask()?;
        if let Some(w) = w {
            self.put(query, w, &a);
        }
        Ok(a)
    }
}

/// The files `apt-cache depends` reads to pick a candidate and its
/// dependencies, at Debian's default locations; `None` (do not remember)
/// when apt is configured elsewhere (`APT_CONFIG`) or has no lists there.
pub fn apt_witnesses() -> Option<Vec<Witness>> {
    if std::env::var_os("APT_CONFIG").is_some() {
        return None;
    }
    let lists = Path::new("/var/lib/apt/lists");
    if !lists.is_dir() {
        return None;
    }
    let mut w = dir_witnesses(lists);
    for f in [
        "/var/lib/dpkg/status",
        "/etc/apt/preferences",
        "/etc/apt/apt.conf",
    ] {
        w.push(Witness::of(Path::new(f)));
    }
    for d in [
        "/etc/apt/preferences.d",
        "/etc/apt/apt.conf.d",
        "/etc/apt/sources.list.d",
    ] {
        w.extend(dir_witnesses(Path::new(d)));
    }
    Some(w)
}

/// The kernel `metapackage` depends on (`apt-cache depends`), remembered
/// while apt's lists, dpkg's status and apt's configuration are unchanged.
pub fn current_kernel(
    memo: Option<&Memo>,
    metapackage: &str,
) -> Result<crate::kernel::KernelRelease> {
    let ask = || crate::fetch::apt::current_kernel(metapackage).map(|k| k.to_string());
    let k = match memo {
        Some(m) => m.answer(
            &format!("apt-cache depends {metapackage}"),
            apt_witnesses,
            ask,
        )?,
        None => ask()?,
    };
    crate::kernel::KernelRelease::parse(&k).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The engine's image index, the file every build, tag or removal
/// rewrites (podman: `<graphroot>/<driver>-images/images.json`; docker:
/// `<root>/image/<driver>/repositories.json`), plus podman's storage
/// configuration. `None` when the engine does not say or the file is absent.
pub fn engine_witnesses(engine: &super::container::Engine) -> Option<Vec<Witness>> {
    use super::container::EngineKind;
    let format = match engine.kind {
        EngineKind::Podman => "{{.Store.GraphRoot}}\t{{.Store.GraphDriverName}}",
        EngineKind::Docker => "{{.DockerRootDir}}\t{{.Driver}}",
    };
    let out = engine
        .command(["info", "--format", format])
        .stdout_string()
        .ok()?;
    let (root, driver) = out.trim().split_once('\t')?;
    let (root, driver) = (Path::new(root), driver.trim());
    if !root.is_absolute() || driver.is_empty() || driver.contains('/') {
        return None;
    }
    let index = match engine.kind {
        EngineKind::Podman => root.join(format!("{driver}-images/images.json")),
        EngineKind::Docker => root.join(format!("image/{driver}/repositories.json")),
    };
    if !index.is_file() {
        return None;
    }
    let mut w = vec![Witness::of(&index)];
    if engine.kind == EngineKind::Podman {
        w.push(Witness::of(Path::new("/etc/containers/storage.conf")));
        if let Some(home) = std::env::var_os("HOME") {
            w.push(Witness::of(
                &Path::new(&home).join(".config/containers/storage.conf"),
            ));
        }
    }
    Some(w)
}

/// The query naming an image id lookup: engine, its global options, the
/// user (rootless stores differ) and storage overrides from the environment.
pub fn image_query(engine: &super::container::Engine, image: &str) -> String {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    format!(
        "image-id\0{}\0{}\0{}\0{}\0{}\0{}",
        engine.program,
        engine.global_options.join("\u{1}"),
        // SAFETY: getuid has no preconditions and cannot fail.
        unsafe { libc::getuid() },
        env("CONTAINERS_STORAGE_CONF"),
        env("DOCKER_HOST"),
        image
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_is_reused_until_a_witness_changes() {
        let d = tempfile::tempdir().unwrap();
        let memo = Memo::new(d.path().join("memo"));
        let lists = d.path().join("lists");
        std::fs::create_dir(&lists).unwrap();
        std::fs::write(lists.join("Packages"), "a").unwrap();
        let asked = std::cell::Cell::new(0);
        let ask = |v: &str| {
            asked.set(asked.get() + 1);
            Ok(v.to_string())
        };
        let w = || Some(dir_witnesses(&lists));
        assert_eq!(memo.answer("q", w, || ask("one")).unwrap(), "one");
        assert_eq!(memo.answer("q", w, || ask("two")).unwrap(), "one");
        assert_eq!(asked.get(), 1);
        // Another query is not confused with the first.
        assert_eq!(memo.answer("q2", w, || ask("other")).unwrap(), "other");
        // A changed list misses (apt replaces lists by rename; a rewrite in
        // place within one mtime tick is only seen through its size).
        std::fs::write(lists.join("Packages"), "bb").unwrap();
        assert_eq!(memo.answer("q", w, || ask("three")).unwrap(), "three");
        // A new file in the directory misses.
        std::fs::write(lists.join("Packages2"), "c").unwrap();
        assert_eq!(memo.answer("q", w, || ask("four")).unwrap(), "four");
        assert_eq!(memo.answer("q", w, || ask("five")).unwrap(), "four");
        // A removed witness misses.
        std::fs::remove_file(lists.join("Packages2")).unwrap();
        assert_eq!(memo.answer("q", w, || ask("six")).unwrap(), "six");
        // Without witnesses nothing is remembered.
        assert_eq!(memo.answer("q3", || None, || ask("x")).unwrap(), "x");
        assert_eq!(memo.answer("q3", || None, || ask("y")).unwrap(), "y");
        // A failing query remembers nothing.
        assert!(memo
            .answer("q4", w, || Err(anyhow::anyhow!("boom")))
            .is_err());
        assert_eq!(memo.answer("q4", w, || ask("z")).unwrap(), "z");
    }
}
