//! `fetch`: download a model revision into the shared cache.
//!
//! Two pods fetching the same model serialise on the repository's lock ([`super::lock`]), so
//! the second finds the files already there and downloads nothing.
//! hf-hub writes to `.incomplete` files and renames them, so a partial file never looks complete;
//! afterwards every blob is re-hashed against its name (sha256 for LFS files, git's blob sha1
//! for files kept in git), and the same read yields the sha256 and size of every file that the
//! report ([`Fetched`]) lists for the operator.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::cache::resolve;
use super::lock::lock_repo;
use crate::digest::{FileDigest, file_digest, file_digest_and_git_sha1};
use crate::error::{Error, Result};
use crate::export::TOKENIZER_FILES;

/// Files a classifier needs besides the tokenizer's (the same list the export copies); weights
/// only as safetensors.
const MODEL_FILES: &[&str] = &["config.json", "model.safetensors"];

/// What to fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub id: String,
    pub revision: String,
    pub cache: PathBuf,
    /// Resolve from the cache only (`HF_HUB_OFFLINE=1` or `--offline`).
    pub offline: bool,
}

/// A verified snapshot. Serialises as the `fetched` message (trainer/README.md, fetch): the last
/// stdout line of `fetch` and its termination message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename = "fetched", rename_all = "camelCase")]
pub struct Fetched {
    /// The snapshot folder (printed on its own line, not part of the message).
    #[serde(skip)]
    pub dir: PathBuf,
    /// The model id asked for.
    pub model: String,
    /// The revision asked for.
    pub revision: String,
    /// The commit it resolved to (None when `model` named a local folder).
    pub resolved_revision: Option<String>,
    /// Every file of the snapshot, sorted by path.
    pub files: Vec<FileDigest>,
    /// The files' sizes added up.
    pub size_bytes: u64,
}

/// Downloads (or, offline, only verifies) the model and returns its snapshot.
pub fn fetch(opts: &FetchOptions) -> Result<Fetched> {
    let lock = lock_repo(&opts.cache, &opts.id)?;

    if !opts.offline {
        let (owner, name) = opts
            .id
            .split_once('/')
            .ok_or_else(|| Error::Hub(format!("model id `{}` is not org/name", opts.id)))?;
        let client = hf_hub::HFClient::builder()
            .cache_dir(&opts.cache)
            .build_sync()
            .map_err(|e| Error::Hub(e.to_string()))?;
        client
            .model(owner, name)
            .snapshot_download()
            .revision(opts.revision.clone())
            .allow_patterns(
                MODEL_FILES
                    .iter()
                    .chain(TOKENIZER_FILES)
                    .map(|s| (*s).to_string())
                    .collect(),
            )
            .send()
            .map_err(|e| Error::Hub(format!("{}@{}: {e}", opts.id, opts.revision)))?;
    }
    let resolved = resolve(&opts.id, &opts.revision, &opts.cache)?;
    let files = verify_blobs(&resolved.dir)?;
    drop(lock);
    Ok(Fetched {
        dir: resolved.dir,
        model: opts.id.clone(),
        revision: opts.revision.clone(),
        resolved_revision: resolved.commit,
        size_bytes: files.iter().map(|f| f.size_bytes).sum(),
        files,
    })
}

/// Re-hashes every file of the snapshot (subfolders included) against the name of the blob it
/// links to — a sha256 (LFS files) or a git blob sha1 (files kept in git); a file whose blob is
/// named otherwise, or that is no link, is hashed but not checked — and returns each file's
/// sha256 and size, sorted by path. One read per file.
pub fn verify_blobs(snapshot: &Path) -> Result<Vec<FileDigest>> {
    let mut files = Vec::new();
    walk(snapshot, snapshot, &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn walk(root: &Path, dir: &Path, files: &mut Vec<FileDigest>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for e in entries {
        let path = e.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            walk(root, &path, files)?;
        } else {
            files.push(verify_file(root, &path)?);
        }
    }
    Ok(())
}

/// Hashes one snapshot file, checking it against its blob's name.
fn verify_file(root: &Path, path: &Path) -> Result<FileDigest> {
    let name = path
        .strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    let blob = std::fs::read_link(path)
        .ok()
        .and_then(|t| t.file_name()?.to_str().map(String::from))
        .filter(|n| n.bytes().all(|b| b.is_ascii_hexdigit()));
    let Some(blob) = blob else {
        return file_digest(path, name);
    };
    let (digest, got) = match blob.len() {
        64 => {
            let d = file_digest(path, name)?;
            let sha256 = d.sha256.clone();
            (d, sha256)
        }
        40 => file_digest_and_git_sha1(path, name)?,
        _ => return file_digest(path, name),
    };
    if got != blob {
        return Err(Error::Hub(format!(
            "{}: content hash {got} does not match blob {blob}; delete the blob and fetch again",
            path.display()
        )));
    }
    Ok(digest)
}
