//! Read-only resolution of a model in the HuggingFace cache, with the same environment variables
//! as `huggingface_hub`: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A model folder ready to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// Folder holding config.json, model.safetensors, tokenizer files.
    pub dir: PathBuf,
    /// The revision asked for (None for a local folder).
    pub revision: Option<String>,
    /// The commit it resolved to (None for a local folder).
    pub commit: Option<String>,
}

/// The hub cache folder from the environment.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("HF_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("hub");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache").join("huggingface").join("hub")
}

/// `org/name` → `models--org--name`.
pub fn repo_folder(id: &str) -> String {
    format!("models--{}", id.replace('/', "--"))
}

/// Whether `rev` is a full commit id (40 hex digits).
pub(crate) fn is_commit(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Resolves `id` at `revision`: a local folder is used as is; otherwise the cache under `cache`
/// is read (refs/<revision> → commit → snapshots/<commit>). Never touches the network.
pub fn resolve(id: &str, revision: &str, cache: &Path) -> Result<ResolvedModel> {
    let local = Path::new(id);
    if local.is_dir() {
        return Ok(ResolvedModel {
            dir: local.to_path_buf(),
            revision: None,
            commit: None,
        });
    }
    let repo = cache.join(repo_folder(id));
    if !repo.is_dir() {
        return Err(Error::Hub(format!(
            "model {id} is not in the cache {} (run `attune-trainer fetch {id}` first)",
            cache.display()
        )));
    }
    let commit = if is_commit(revision) {
        revision.to_string()
    } else {
        let ref_path = repo.join("refs").join(revision);
        std::fs::read_to_string(&ref_path)
            .map_err(|e| {
                Error::Hub(format!(
                    "model {id}: revision `{revision}` not in the cache ({}: {e})",
                    ref_path.display()
                ))
            })?
            .trim()
            .to_string()
    };
    let dir = repo.join("snapshots").join(&commit);
    if !dir.join("config.json").is_file() {
        return Err(Error::Hub(format!(
            "model {id}@{revision}: snapshot {} has no config.json",
            dir.display()
        )));
    }
    Ok(ResolvedModel {
        dir,
        revision: Some(revision.to_string()),
        commit: Some(commit),
    })
}
