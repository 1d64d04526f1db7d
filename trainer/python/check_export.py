#!/usr/bin/env python3
"""Check that an Attune export loads in transformers and gives our logits.

Loads AutoTokenizer and AutoModelForSequenceClassification from DIR (local
files only, fp32, eval mode), computes logits for every line of --texts (a
trailing newline does not add a line), and compares them with --logits, a
JSON file {"logits": [[...], ...]} in the same order.

Also checks that config.json has matching id2label / label2id with one label
per logit, and that the checkpoint filled every weight of the model.
Prints each text's prediction. Exit status: 0 when the largest absolute
difference is <= --atol, 1 when it is not (the worst rows are printed),
2 when the export or the inputs are unusable.

Tokenization: padding to the longest text of a batch, truncation at
--max-length; without it, at the tokenizer's model_max_length, else the
config's max_position_embeddings, else 512.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import NoReturn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)

NO_LIMIT = 1_000_000  # transformers' "no model_max_length" is a huge int


def fail(msg: str) -> NoReturn:
    print(f"check_export: {msg}", file=sys.stderr)
    sys.exit(2)


def check_labels(config: dict, num_logits: int) -> list[str]:
    id2label = config.get("id2label")
    label2id = config.get("label2id")
    if not isinstance(id2label, dict) or not isinstance(label2id, dict):
        fail("config.json lacks id2label or label2id")
    labels: list[str] = []
    for i in range(len(id2label)):
        label = id2label.get(str(i))
        if not isinstance(label, str):
            fail(f"id2label keys are not 0..{len(id2label) - 1}: {sorted(id2label)}")
        labels.append(label)
    if {label: i for i, label in enumerate(labels)} != label2id:
        fail(f"label2id {label2id} does not invert id2label {id2label}")
    if len(labels) != num_logits:
        fail(f"{len(labels)} labels in config.json but {num_logits} logits per row")
    return labels


def max_length(tokenizer: PreTrainedTokenizerBase, config: dict, override: int | None) -> int:
    if override is not None:
        return override
    if 0 < tokenizer.model_max_length < NO_LIMIT:
        return int(tokenizer.model_max_length)
    return int(config.get("max_position_embeddings", 512))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path, required=True, help="export folder")
    parser.add_argument("--texts", type=Path, required=True, help="one text per line")
    parser.add_argument("--logits", type=Path, required=True, help='our logits: {"logits": [[...], ...]}')
    parser.add_argument("--atol", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, help="truncation length our side used")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--worst", type=int, default=5, help="rows shown on failure")
    args = parser.parse_args()

    texts = args.texts.read_text(encoding="utf-8").splitlines()
    ours = torch.tensor(json.loads(args.logits.read_text())["logits"], dtype=torch.float64)
    if ours.dim() != 2 or ours.shape[0] != len(texts) or not texts:
        fail(f"{args.logits}: logits shape {list(ours.shape)}, expected [{len(texts)}, num_labels]")
    config = json.loads((args.export / "config.json").read_text())
    labels = check_labels(config, ours.shape[1])

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(args.export, local_files_only=True)
    model, info = AutoModelForSequenceClassification.from_pretrained(
        args.export,
        local_files_only=True,
        dtype=torch.float32,
        attn_implementation="eager",
        output_loading_info=True,
    )
    if info["missing_keys"] or info["mismatched_keys"]:
        fail(f"weights missing or of the wrong shape: {info['missing_keys']} {info['mismatched_keys']}")
    if info["unexpected_keys"]:
        print(f"check_export: ignored weights: {info['unexpected_keys']}", file=sys.stderr)
    model.eval()
    limit = max_length(tokenizer, config, args.max_length)

    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), args.batch_size):
            batch = texts[start : start + args.batch_size]
            enc = tokenizer(batch, padding=True, truncation=True, max_length=limit, return_tensors="pt")
            rows.append(model(**enc).logits.to(torch.float64))
    theirs = torch.cat(rows)

    diff = (theirs - ours).abs().amax(dim=1)
    print(f"{len(texts)} texts, max_length {limit}, labels {labels}")
    print(f"{'row':>4}  {'transformers':<16} {'ours':<16} {'max|diff|':>10}  text")
    for i, text in enumerate(texts):
        ref = labels[int(theirs[i].argmax())]
        our = labels[int(ours[i].argmax())]
        flag = "" if ref == our else "  <- differs"
        print(f"{i:>4}  {ref:<16} {our:<16} {diff[i].item():>10.3g}  {text[:60]!r}{flag}")

    worst = float(diff.max())
    if worst <= args.atol:
        print(f"OK: max |diff| {worst:.3g} <= atol {args.atol:g}")
        return 0
    print(f"FAIL: max |diff| {worst:.3g} > atol {args.atol:g}; worst rows:")
    for i in diff.argsort(descending=True)[: args.worst].tolist():
        print(f"  row {i}: |diff| {diff[i].item():.3g}")
        print(f"    transformers {[round(x, 6) for x in theirs[i].tolist()]}")
        print(f"    ours         {[round(x, 6) for x in ours[i].tolist()]}")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
