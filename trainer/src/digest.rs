//! File digests for checkpoints, export manifests and the verification of fetched blobs.

use std::io::Read;
use std::path::Path;

use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    hash_file(path, Sha256::new(), &[])
}

/// Git's blob id of a file: hex sha1 of `blob <size>\0` + content. The Hub names the cache
/// blobs of files kept in git itself (configs, small tokenizer files) by it, and LFS files by
/// their sha256.
pub fn git_blob_sha1_file(path: &Path) -> Result<String> {
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    hash_file(path, Sha1::new(), format!("blob {size}\0").as_bytes())
}

/// Hex digest of `prefix` + the file's bytes, streamed.
fn hash_file<D: Digest>(path: &Path, mut h: D, prefix: &[u8]) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    h.update(prefix);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Flushes a file or directory to disk (rename is only atomic-and-durable after this).
pub fn fsync(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))
}
