//! File digests for checkpoints, export manifests, the verification of fetched blobs and the
//! file lists the operator receives (the done event's `model.files`, fetch's report).

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// One file as a report lists it: what a publisher records and a consumer checks a download
/// against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileDigest {
    /// Relative to the reported folder, `/`-separated.
    pub path: String,
    /// Hex sha256 of the content.
    pub sha256: String,
    pub size_bytes: u64,
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    hash_file(path, Sha256::new(), &[])
}

/// Git's blob id of a file: hex sha1 of `blob <size>\0` + content. The Hub names the cache
/// blobs of files kept in git itself (configs, small tokenizer files) by it, and LFS files by
/// their sha256.
pub fn git_blob_sha1_file(path: &Path) -> Result<String> {
    hash_file(path, Sha1::new(), &git_blob_header(path)?)
}

/// Hex sha256 of bytes already in memory (a file just serialised, not yet read back).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// `path`'s sha256 and size in one read, reported as `name`.
pub fn file_digest(path: &Path, name: String) -> Result<FileDigest> {
    let mut h = Sha256::new();
    let size = stream(path, |chunk| h.update(chunk))?;
    Ok(FileDigest {
        path: name,
        sha256: hex(&h.finalize()),
        size_bytes: size,
    })
}

/// [`file_digest`] plus git's blob sha1 from the same read: a file kept in git is verified by
/// its sha1 but reported by its sha256, and a weights-sized file should not be read twice.
pub fn file_digest_and_git_sha1(path: &Path, name: String) -> Result<(FileDigest, String)> {
    let mut sha256 = Sha256::new();
    let mut sha1 = Sha1::new();
    sha1.update(git_blob_header(path)?);
    let size = stream(path, |chunk| {
        sha256.update(chunk);
        sha1.update(chunk);
    })?;
    let digest = FileDigest {
        path: name,
        sha256: hex(&sha256.finalize()),
        size_bytes: size,
    };
    Ok((digest, hex(&sha1.finalize())))
}

/// `blob <size>\0`, what git hashes before a file's content.
fn git_blob_header(path: &Path) -> Result<Vec<u8>> {
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    Ok(format!("blob {size}\0").into_bytes())
}

/// Hex digest of `prefix` + the file's bytes, streamed.
fn hash_file<D: Digest>(path: &Path, mut h: D, prefix: &[u8]) -> Result<String> {
    h.update(prefix);
    stream(path, |chunk| h.update(chunk))?;
    Ok(hex(&h.finalize()))
}

/// Feeds the file to `f` in 1 MiB chunks; returns its length.
fn stream(path: &Path, mut f: impl FnMut(&[u8])) -> Result<u64> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(total);
        }
        f(&buf[..n]);
        total += n as u64;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Flushes a file or directory to disk (rename is only atomic-and-durable after this).
pub fn fsync(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))
}
