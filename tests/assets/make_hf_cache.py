#!/usr/bin/env python3
"""Lay a model folder out as a HuggingFace hub cache entry.

    OUT/models--ORG--NAME/blobs/<hash>
    OUT/models--ORG--NAME/snapshots/<commit>/<file>  -> ../../blobs/<hash>
    OUT/models--ORG--NAME/refs/main                  (the commit, no newline)

Blob names follow the hub: the sha256 of the content for files that the
repository keeps in git LFS (weights, per its .gitattributes patterns below),
the git blob sha1 for the others. The hub's commit hash cannot be known from
the files, so the commit is a deterministic stand-in: the sha1 of the sorted
"<path> <blob>" lines, so it changes exactly when a file does.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import os
import shutil
from pathlib import Path

LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.h5", "*.onnx", "*.msgpack", "*.ot")


def blob_name(path: Path, rel: str) -> str:
    data = path.read_bytes()
    if any(fnmatch.fnmatch(Path(rel).name, p) for p in LFS_PATTERNS):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="folder with the model files")
    parser.add_argument("--repo", required=True, help="hub id, e.g. sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--out", type=Path, required=True, help="cache folder (HF_HUB_CACHE)")
    args = parser.parse_args()

    files = sorted((p.relative_to(args.src).as_posix(), p) for p in args.src.rglob("*") if p.is_file())
    if not files:
        raise SystemExit(f"no files under {args.src}")
    blobs = {rel: blob_name(path, rel) for rel, path in files}
    manifest = "".join(f"{rel} {blobs[rel]}\n" for rel, _ in files)
    commit = hashlib.sha1(manifest.encode()).hexdigest()

    repo_dir = args.out / ("models--" + args.repo.replace("/", "--"))
    if repo_dir.exists():
        shutil.rmtree(repo_dir)
    (repo_dir / "blobs").mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    for rel, path in files:
        blob = repo_dir / "blobs" / blobs[rel]
        if not blob.exists():
            shutil.copyfile(path, blob)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    print(f"{args.repo}: {len(files)} files, commit {commit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
