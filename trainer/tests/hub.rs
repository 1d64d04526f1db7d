//! Hub cache tests (offline only): resolve a model from a cache folder laid out by the test,
//! verify blobs, and fail clearly on what is missing.

use std::path::{Path, PathBuf};

use attune_trainer::Error;
use attune_trainer::digest::{git_blob_sha1_file, sha256_file};
use attune_trainer::hub::{FetchOptions, fetch, resolve};

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Lays out `models--org--tiny` in HF cache form (blobs + symlinked snapshot + refs/main) from
/// the files of `model_dir`, naming blobs as the Hub does: the weights (an LFS file) by sha256,
/// the rest (kept in git) by git blob sha1; returns the cache root.
pub fn lay_out_cache(root: &Path, model_dir: &Path) -> PathBuf {
    let repo = root.join("models--org--tiny");
    let snap = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), COMMIT).unwrap();
    for entry in std::fs::read_dir(model_dir).unwrap() {
        let path = entry.unwrap().path();
        let lfs = path.extension().is_some_and(|e| e == "safetensors");
        let sha = if lfs {
            sha256_file(&path).unwrap()
        } else {
            git_blob_sha1_file(&path).unwrap()
        };
        std::fs::copy(&path, repo.join("blobs").join(&sha)).unwrap();
        std::os::unix::fs::symlink(
            Path::new("../../blobs").join(&sha),
            snap.join(path.file_name().unwrap()),
        )
        .unwrap();
    }
    root.to_path_buf()
}

#[test]
fn resolves_branch_and_commit_from_the_cache() {
    let ws = crate::common::workspace("bert", 8);
    let cache = lay_out_cache(&ws.tmp.path().join("hub"), &ws.model);
    let r = resolve("org/tiny", "main", &cache).unwrap();
    assert_eq!(r.commit.as_deref(), Some(COMMIT));
    assert!(r.dir.ends_with(format!("snapshots/{COMMIT}")));
    assert!(r.dir.join("model.safetensors").is_file());
    let by_commit = resolve("org/tiny", COMMIT, &cache).unwrap();
    assert_eq!(by_commit.dir, r.dir);
    match resolve("org/tiny", "v2", &cache) {
        Err(Error::Hub(m)) => assert!(m.contains("revision `v2` not in the cache"), "{m}"),
        other => panic!("{other:?}"),
    }
    match resolve("org/other", "main", &cache) {
        Err(Error::Hub(m)) => assert!(m.contains("attune-trainer fetch org/other"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn offline_fetch_verifies_blobs() {
    let ws = crate::common::workspace("bert", 8);
    let cache = lay_out_cache(&ws.tmp.path().join("hub"), &ws.model);
    let opts = FetchOptions {
        id: "org/tiny".into(),
        revision: "main".into(),
        cache: cache.clone(),
        offline: true,
    };
    let r = fetch(&opts).unwrap();
    assert!(r.dir.join("config.json").is_file());
    assert!(
        cache
            .join(".locks/models--org--tiny/attune-fetch.lock")
            .is_file()
    );
    // Corrupt a git blob (config), then an LFS blob (weights): verification must fail.
    for file in ["config.json", "model.safetensors"] {
        let blob = std::fs::canonicalize(r.dir.join(file)).unwrap();
        let good = std::fs::read(&blob).unwrap();
        std::fs::write(&blob, b"corrupt").unwrap();
        match fetch(&opts) {
            Err(Error::Hub(m)) => assert!(
                m.contains("does not match blob") && m.contains(file),
                "{file}: {m}"
            ),
            other => panic!("{file}: {other:?}"),
        }
        std::fs::write(&blob, good).unwrap();
        fetch(&opts).unwrap();
    }
    // A known git blob id (`printf 'hello\n' | git hash-object --stdin`).
    let hello = ws.tmp.path().join("hello");
    std::fs::write(&hello, b"hello\n").unwrap();
    assert_eq!(
        git_blob_sha1_file(&hello).unwrap(),
        "ce013625030ba8dba906f756967f9e9ca394464a"
    );
}

#[test]
fn concurrent_fetches_serialise_on_the_lock() {
    let ws = crate::common::workspace("bert", 8);
    let cache = lay_out_cache(&ws.tmp.path().join("hub"), &ws.model);
    let lock_dir = cache.join(".locks/models--org--tiny");
    std::fs::create_dir_all(&lock_dir).unwrap();
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_dir.join("attune-fetch.lock"))
        .unwrap();
    held.lock().unwrap();
    let opts = FetchOptions {
        id: "org/tiny".into(),
        revision: "main".into(),
        cache,
        offline: true,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let r = fetch(&opts);
        tx.send(()).unwrap();
        r
    });
    // While another process holds the lock, fetch waits.
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(300))
            .is_err()
    );
    held.unlock().unwrap();
    rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    assert!(worker.join().unwrap().is_ok());
}
