//! `evict`: remove one revision of a model from the cache, as the operator's garbage collector
//! asks when no job has used it for long. Under the repository's lock ([`super::lock`]) it
//! removes the snapshot, the refs naming its commit, and every blob no remaining snapshot links
//! to (shared blobs of other revisions stay); with no revision left the repository's folder
//! goes whole.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::cache::{is_commit, repo_folder};
use super::lock::lock_repo;
use crate::error::{Error, Result};

/// What to remove.
#[derive(Debug, Clone)]
pub struct EvictOptions {
    /// Model id, org/name.
    pub id: String,
    /// A commit, or a branch or tag the cache's refs resolve.
    pub revision: String,
    /// The cache folder.
    pub cache: PathBuf,
}

/// What was removed. Serialises as the `evicted` message: the stdout line of `evict` and its
/// termination message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename = "evicted", rename_all = "camelCase")]
pub struct Evicted {
    /// The model id asked for.
    pub model: String,
    /// The revision asked for.
    pub revision: String,
    /// The commit whose snapshot was removed (None: the revision was not in the cache).
    pub resolved_revision: Option<String>,
    /// Bytes of the files removed.
    pub freed_bytes: u64,
    /// Whether the repository's folder is gone (no other revision was left).
    pub repo_removed: bool,
}

/// Removes the revision; a revision (or model) that is not in the cache is no error.
pub fn evict(opts: &EvictOptions) -> Result<Evicted> {
    let revision = Path::new(&opts.revision);
    if revision.is_absolute()
        || revision
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(Error::Config(format!(
            "revision `{}` is no commit, branch or tag",
            opts.revision
        )));
    }
    let _lock = lock_repo(&opts.cache, &opts.id)?;
    let repo = opts.cache.join(repo_folder(&opts.id));
    let mut evicted = Evicted {
        model: opts.id.clone(),
        revision: opts.revision.clone(),
        resolved_revision: None,
        freed_bytes: 0,
        repo_removed: false,
    };
    if !repo.is_dir() {
        return Ok(evicted);
    }
    let commit = if is_commit(&opts.revision) {
        Some(opts.revision.clone())
    } else {
        std::fs::read_to_string(repo.join("refs").join(revision))
            .ok()
            .map(|c| c.trim().to_owned())
    };
    if let Some(commit) = &commit {
        for dir in [
            repo.join("snapshots").join(commit),
            repo.join(".no_exist").join(commit),
        ] {
            evicted.freed_bytes += remove_dir(&dir)?;
        }
        remove_refs_to(&repo.join("refs"), commit)?;
    }
    evicted.resolved_revision = commit;
    let linked = linked_blobs(&repo.join("snapshots"))?;
    let blobs = repo.join("blobs");
    for entry in read_dir(&blobs)? {
        let keep = entry
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| linked.contains(n));
        if !keep {
            evicted.freed_bytes += file_size(&entry);
            remove(&entry)?;
        }
    }
    if read_dir(&repo.join("snapshots"))?.is_empty() {
        evicted.freed_bytes += remove_dir(&repo)?;
        evicted.repo_removed = true;
    }
    Ok(evicted)
}

/// The entries of `dir` (none when it does not exist).
fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.path()).map_err(|e| Error::io(dir, e)))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// Size of a regular file (a link counts nothing: its blob is counted where it is removed).
fn file_size(path: &Path) -> u64 {
    std::fs::symlink_metadata(path)
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map_or(0, |m| m.len())
}

/// Removes a file, link or folder.
fn remove(path: &Path) -> Result<()> {
    let is_dir = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    let result = if is_dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    result.map_err(|e| Error::io(path, e))
}

/// Removes a folder (if there) and returns the bytes of the regular files it held.
fn remove_dir(dir: &Path) -> Result<u64> {
    if !dir.is_dir() {
        return Ok(0);
    }
    let freed = walk(dir, &mut |_| Ok(()))?;
    remove(dir)?;
    Ok(freed)
}

/// Calls `visit` with every file and link under `dir` (subfolders too) and returns the bytes of
/// the regular files among them.
fn walk(dir: &Path, visit: &mut impl FnMut(&Path) -> Result<()>) -> Result<u64> {
    let mut bytes = 0;
    for path in read_dir(dir)? {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
        if meta.is_dir() {
            bytes += walk(&path, visit)?;
        } else {
            bytes += file_size(&path);
            visit(&path)?;
        }
    }
    Ok(bytes)
}

/// Removes every ref (refs/main, refs/pr/1, …) that names `commit`.
fn remove_refs_to(refs: &Path, commit: &str) -> Result<()> {
    walk(refs, &mut |path| {
        let names_it = std::fs::read_to_string(path).is_ok_and(|c| c.trim() == commit);
        if names_it { remove(path) } else { Ok(()) }
    })
    .map(drop)
}

/// The blob names the files of the remaining snapshots link to.
fn linked_blobs(snapshots: &Path) -> Result<HashSet<String>> {
    let mut linked = HashSet::new();
    walk(snapshots, &mut |path| {
        if let Some(name) = std::fs::read_link(path)
            .ok()
            .and_then(|t| t.file_name()?.to_str().map(String::from))
        {
            linked.insert(name);
        }
        Ok(())
    })?;
    Ok(linked)
}
