//! The per-repository lock of the cache: `fetch` and `evict` of one repo take it in turn (an
//! exclusive advisory lock on `<cache>/.locks/<repo folder>/attune-fetch.lock`), so an eviction
//! never deletes blobs a fetch is linking, and a fetch never sees half an eviction.

use std::fs::File;
use std::path::Path;

use super::cache::repo_folder;
use crate::error::{Error, Result};

/// The held lock of one repository; released when dropped.
#[derive(Debug)]
pub struct RepoLock {
    file: File,
}

/// Waits for and takes the lock of repository `id` in `cache`.
pub fn lock_repo(cache: &Path, id: &str) -> Result<RepoLock> {
    let dir = cache.join(".locks").join(repo_folder(id));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path = dir.join("attune-fetch.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    // std's advisory lock (flock on Linux), released when the file is closed.
    file.lock().map_err(|e| Error::io(&path, e))?;
    Ok(RepoLock { file })
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        // Closing releases it too; unlocking first keeps the order explicit.
        let _ = self.file.unlock();
    }
}
