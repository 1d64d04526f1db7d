#!/usr/bin/env python3
"""Reference training losses from PyTorch, for comparison with the Rust trainer.

Loads AutoModelForSequenceClassification from --init (an HF-layout export of
our model at step 0, classification head included; every weight must be in
the checkpoint), switches dropout off (eval mode) but keeps gradients, and
takes one optimizer step per line of --batches:

    {"input_ids": [[...]], "attention_mask": [[...]], "labels": [...],
     "token_type_ids": [[...]]}            (token_type_ids optional)

Optimizer: torch.optim.AdamW (betas 0.9/0.999, eps 1e-8), weight decay on
every parameter except biases and LayerNorm weights; learning rate from
transformers.get_linear_schedule_with_warmup(warmup_steps, total_steps);
clip_grad_norm_(max_grad_norm) when max_grad_norm > 0. Loss: cross-entropy,
mean over the batch. fp32, torch.manual_seed(0), deterministic algorithms.

--config: {"learning_rate", "weight_decay", "warmup_steps", "total_steps",
"max_grad_norm"}, and optionally "decay_all": true to apply weight decay to
biases and LayerNorm weights as well (not what the trainer does: the tests use
it to show that a run makes the exclusion visible).
--out: {"losses": [...], "grad_norms": [...], "learning_rates": [...]}, one
entry per step: the loss before the update, the gradient norm before
clipping, and the learning rate the update used.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup  # noqa: E402

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight")
CONFIG_KEYS = ("learning_rate", "weight_decay", "warmup_steps", "total_steps", "max_grad_norm")


def load_batches(path: Path) -> list[dict[str, torch.Tensor]]:
    batches = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        batch = {
            "input_ids": torch.tensor(row["input_ids"], dtype=torch.long),
            "attention_mask": torch.tensor(row["attention_mask"], dtype=torch.long),
            "labels": torch.tensor(row["labels"], dtype=torch.long),
        }
        if row.get("token_type_ids") is not None:
            batch["token_type_ids"] = torch.tensor(row["token_type_ids"], dtype=torch.long)
        if batch["input_ids"].dim() != 2 or batch["labels"].shape != batch["input_ids"].shape[:1]:
            raise SystemExit(f"{path}:{n}: input_ids must be [batch][seq] and labels [batch]")
        batches.append(batch)
    return batches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", type=Path, required=True, help="HF-layout model at step 0")
    parser.add_argument("--batches", type=Path, required=True, help="JSONL, one batch per line")
    parser.add_argument("--config", type=Path, required=True, help="optimizer config JSON")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    config = json.loads(args.config.read_text())
    missing = [k for k in CONFIG_KEYS if k not in config]
    if missing:
        raise SystemExit(f"{args.config}: missing {missing}")
    batches = load_batches(args.batches)

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    model, info = AutoModelForSequenceClassification.from_pretrained(
        args.init,
        local_files_only=True,
        dtype=torch.float32,
        attn_implementation="eager",
        output_loading_info=True,
    )
    if info["missing_keys"] or info["mismatched_keys"]:
        raise SystemExit(
            f"{args.init}: weights missing or of the wrong shape: {info['missing_keys']} {info['mismatched_keys']}"
        )
    model.eval()  # dropout off; autograd stays on

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    no_decay = 0.0 if not config.get("decay_all", False) else config["weight_decay"]
    groups = [
        {"params": [p for n, p in named if not any(k in n for k in NO_DECAY)], "weight_decay": config["weight_decay"]},
        {"params": [p for n, p in named if any(k in n for k in NO_DECAY)], "weight_decay": no_decay},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config["learning_rate"], betas=(0.9, 0.999), eps=1e-8)
    scheduler = get_linear_schedule_with_warmup(optimizer, config["warmup_steps"], config["total_steps"])
    params = [p for _, p in named]

    losses: list[float] = []
    grad_norms: list[float] = []
    learning_rates: list[float] = []
    for batch in batches:
        labels = batch.pop("labels")
        logits = model(**batch).logits
        loss = F.cross_entropy(logits, labels, reduction="mean")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in params if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        if config["max_grad_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(params, config["max_grad_norm"])
        learning_rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        grad_norms.append(norm.item())

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"losses": losses, "grad_norms": grad_norms, "learning_rates": learning_rates}))
    print(f"{len(losses)} steps, loss {losses[0]:.6f} -> {losses[-1]:.6f}" if losses else "0 steps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
