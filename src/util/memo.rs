//! Answers of slow host queries, remembered under a fingerprint of the files
//! that decide them.
//!
//! Some questions cost a second or more and are asked on every run:
//! `apt-cache depends` and `apt-cache show` (apt re-parses every package list
//! when, as on Debian's container images, its binary cache is switched off),
//! `podman image inspect` (starting the engine client). Their answers are
//! functions of a few files on disk: apt's lists, dpkg's status and apt's
//! preferences ([`crate::fetch::apt::witnesses`]); the engine's image store
//! index ([`crate::build::memo::engine_witnesses`]). So each answer is stored
//! with the (size, mtime, ctime, inode) of those "witness" files, taken
//! *before* the query ran, and reused while every witness is unchanged. Any
//! change to a witness (an `apt-get update`, a rebuilt or re-tagged image)
//! makes the memo miss and the real tool runs again. When the witnesses
//! cannot be found (an unusual apt layout, docker's containerd store),
//! nothing is remembered and the tool runs every time: the memo only ever
//! saves time.

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
