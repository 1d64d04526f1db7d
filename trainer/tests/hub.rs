//! Hub cache tests (offline only): resolve a model from a cache folder laid out by the test,
//! verify blobs, and fail clearly on what is missing.

use std::path::{Path, PathBuf};

use attune_trainer::Error;
use attune_trainer::digest::{git_blob_sha1_file, sha256_file};
use attune_trainer::hub::{EvictOptions, FetchOptions, evict, fetch, resolve};

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

/// A second revision of `org/tiny` in `cache`: the first's files, but other weights.
fn add_revision(cache: &Path, commit: &str) {
    let repo = cache.join("models--org--tiny");
    let first = repo.join("snapshots").join(COMMIT);
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    for entry in std::fs::read_dir(&first).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if name == "model.safetensors" {
            let mut weights = std::fs::read(&path).unwrap();
            weights.extend_from_slice(b"    ");
            let blob = repo.join("blobs").join("f".repeat(64));
            std::fs::write(&blob, weights).unwrap();
            std::os::unix::fs::symlink(
                Path::new("../../blobs").join("f".repeat(64)),
                snap.join(name),
            )
            .unwrap();
        } else {
            std::os::unix::fs::symlink(std::fs::read_link(&path).unwrap(), snap.join(name))
                .unwrap();
        }
    }
    std::fs::write(repo.join("refs").join("v2"), commit).unwrap();
}

#[test]
fn evict_removes_one_revision_and_the_blobs_only_it_links_to() {
    let ws = crate::common::workspace("bert", 8);
    let cache = lay_out_cache(&ws.tmp.path().join("hub"), &ws.model);
    let second = "89abcdef0123456789abcdef0123456789abcdef";
    add_revision(&cache, second);
    let repo = cache.join("models--org--tiny");
    let first_weights = std::fs::canonicalize(
        repo.join("snapshots")
            .join(COMMIT)
            .join("model.safetensors"),
    )
    .unwrap();
    let freed = std::fs::metadata(&first_weights).unwrap().len();
    let opts = |revision: &str| EvictOptions {
        id: "org/tiny".into(),
        revision: revision.into(),
        cache: cache.clone(),
    };

    let evicted = evict(&opts("main")).unwrap();
    assert_eq!(evicted.resolved_revision.as_deref(), Some(COMMIT));
    assert_eq!(evicted.freed_bytes, freed);
    assert!(!evicted.repo_removed);
    assert!(!repo.join("snapshots").join(COMMIT).exists());
    assert!(!repo.join("refs/main").exists());
    assert!(
        !first_weights.exists(),
        "the first revision's own weights go"
    );
    // The second revision still resolves, with the blobs it shares with the first.
    let kept = resolve("org/tiny", "v2", &cache).unwrap();
    assert_eq!(kept.commit.as_deref(), Some(second));
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        assert!(kept.dir.join(file).is_file(), "{file}");
    }
    let message = serde_json::to_value(&evicted).unwrap();
    assert_eq!(message["event"], "evicted");
    assert_eq!(message["freedBytes"], freed);

    // The last revision takes the repository folder with it; evicting again is no error.
    let last = evict(&opts(second)).unwrap();
    assert!(last.repo_removed && last.freed_bytes > 0, "{last:?}");
    assert!(!repo.exists());
    let again = evict(&opts(second)).unwrap();
    assert_eq!((again.freed_bytes, again.repo_removed), (0, false));
    assert_eq!(again.resolved_revision, None);
}

#[test]
fn evict_refuses_a_revision_that_leaves_the_refs_folder() {
    let ws = crate::common::workspace("bert", 8);
    let cache = lay_out_cache(&ws.tmp.path().join("hub"), &ws.model);
    for revision in ["../../../etc/passwd", "/main", "."] {
        match evict(&EvictOptions {
            id: "org/tiny".into(),
            revision: revision.into(),
            cache: cache.clone(),
        }) {
            Err(Error::Config(m)) => assert!(m.contains("no commit, branch or tag"), "{m}"),
            other => panic!("{revision}: {other:?}"),
        }
    }
    assert!(resolve("org/tiny", "main", &cache).is_ok());
}

#[test]
fn evict_waits_for_a_fetch_of_the_same_repository() {
    let ws = crate::common::workspace("bert", 8);
    let cache = lay_out_cache(&ws.tmp.path().join("hub"), &ws.model);
    let held = attune_trainer::hub::lock::lock_repo(&cache, "org/tiny").unwrap();
    let opts = EvictOptions {
        id: "org/tiny".into(),
        revision: "main".into(),
        cache: cache.clone(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let r = evict(&opts);
        tx.send(()).unwrap();
        r
    });
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(300))
            .is_err(),
        "evict ran while the lock was held"
    );
    assert!(resolve("org/tiny", "main", &cache).is_ok());
    drop(held);
    rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    assert!(worker.join().unwrap().unwrap().repo_removed);
}
