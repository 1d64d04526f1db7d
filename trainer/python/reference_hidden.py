#!/usr/bin/env python3
"""Reference encoder outputs of a BERT-family model, computed by transformers.

For a few fixed sentences (short to over-long), writes the tokenizer's
input_ids / attention_mask / token_type_ids (padded to the longest, truncated
to --max-length) and the fp32, eval-mode last_hidden_state of AutoModel:

    {"model": ..., "max_length": 128, "texts": [...],
     "input_ids": [[...]], "attention_mask": [[...]], "token_type_ids": [[...]],
     "last_hidden_state": [batch][seq][hidden]}

Loads from the local hub cache only (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

TEXTS = [
    "Hello world.",
    "Shares in the company rose 4% after it reported higher-than-expected profits.",
    "The striker, who joined from Parma last season, scored twice in the second half as the "
    "home side came from behind to win 3-2 and move top of the table on goal difference.",
    # Longer than 128 tokens: checks truncation (and [SEP] placement) too.
    " ".join(
        [
            "The government has published its long-awaited plans for the reform of the pension "
            "system, promising that no worker would be worse off under the new arrangements."
        ]
        * 8
    ),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--cache-dir", type=Path, required=True, help="hub cache holding the model")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(args.model, cache_dir=args.cache_dir, local_files_only=True)
    model = AutoModel.from_pretrained(
        args.model,
        cache_dir=args.cache_dir,
        local_files_only=True,
        dtype=torch.float32,
        attn_implementation="eager",
    )
    model.eval()
    enc = tokenizer(
        TEXTS,
        padding="longest",
        truncation=True,
        max_length=args.max_length,
        return_tensors="pt",
        return_token_type_ids=True,
    )
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state

    result = {
        "model": args.model,
        "max_length": args.max_length,
        "texts": TEXTS,
        "input_ids": enc["input_ids"].tolist(),
        "attention_mask": enc["attention_mask"].tolist(),
        "token_type_ids": enc["token_type_ids"].tolist(),
        "last_hidden_state": hidden.tolist(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result))
    lengths = enc["attention_mask"].sum(dim=1).tolist()
    print(f"{args.out}: {len(TEXTS)} texts, lengths {lengths}, hidden {list(hidden.shape)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
