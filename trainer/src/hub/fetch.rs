//! `fetch`: download a model revision into the shared cache.
//!
//! Two pods fetching the same model serialise on an exclusive lock file under
//! `<cache>/.locks/<repo>/`, so the second finds the files already there and downloads nothing.
//! hf-hub writes to `.incomplete` files and renames them, so a partial file never looks complete;
//! afterwards every blob is re-hashed against its name (sha256 for LFS files, git's blob sha1
//! for files kept in git).

use std::path::{Path, PathBuf};

use super::cache::{ResolvedModel, repo_folder, resolve};
use crate::digest::{git_blob_sha1_file, sha256_file};
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

/// Downloads (or, offline, only verifies) the model and returns its snapshot.
pub fn fetch(opts: &FetchOptions) -> Result<ResolvedModel> {
    let lock_dir = opts.cache.join(".locks").join(repo_folder(&opts.id));
    std::fs::create_dir_all(&lock_dir).map_err(|e| Error::io(&lock_dir, e))?;
    let lock_path = lock_dir.join("attune-fetch.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    // std's advisory lock (flock on Linux), released when `lock` is dropped or unlocked.
    lock.lock().map_err(|e| Error::io(&lock_path, e))?;

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
    verify_blobs(&resolved.dir)?;
    lock.unlock().map_err(|e| Error::io(&lock_path, e))?;
    Ok(resolved)
}

/// Re-hashes every snapshot file against the name of the blob it links to: a sha256 (LFS
/// files) or a git blob sha1 (files kept in git). Blobs named otherwise are not checked.
pub fn verify_blobs(snapshot: &Path) -> Result<()> {
    let entries = std::fs::read_dir(snapshot).map_err(|e| Error::io(snapshot, e))?;
    for e in entries {
        let path = e.map_err(|e| Error::io(snapshot, e))?.path();
        let Ok(target) = std::fs::read_link(&path) else {
            continue;
        };
        let Some(name) = target.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let got = match name.len() {
            64 => sha256_file(&path)?,
            40 => git_blob_sha1_file(&path)?,
            _ => continue,
        };
        if got != name {
            return Err(Error::Hub(format!(
                "{}: content hash {got} does not match blob {name}; delete the blob and fetch \
                 again",
                path.display()
            )));
        }
    }
    Ok(())
}
