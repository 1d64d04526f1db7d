#!/usr/bin/env python3
"""The PyTorch half of the Attune benchmark.

Fine-tunes sentence-transformers/all-MiniLM-L6-v2 (from $ATTUNE_ASSETS/hf-cache,
offline) with a fresh classification head on BBC News train.jsonl, then
evaluates on validation.jsonl, and prints ONE JSON line:

    {"train_samples_per_s", "infer_samples_per_s", "peak_rss_mib",
     "load_seconds", "accuracy", "steps", "device", "precision",
     "peak_gpu_mib"}

Training: batches of --batch-size texts in a seeded shuffled order (reshuffled
each epoch), tokenized per batch (padding to the longest, truncation at
--max-length), dropout on, AdamW (betas 0.9/0.999, eps 1e-8, --weight-decay
on every parameter except biases and LayerNorm weights, transformers' Trainer
convention, which attune-trainer follows too) with a linear schedule
(--warmup-steps, then decay to 0 at --steps), gradient clipping at
--max-grad-norm.
train_samples_per_s leaves out the first step (warm-up) when there are more.
infer_samples_per_s covers the whole validation pass, tokenization included.
load_seconds: loading tokenizer and model. peak_rss_mib: ru_maxrss.
--device cuda trains and evaluates on the GPU (timers read after a synchronize;
peak_gpu_mib is torch.cuda.max_memory_allocated, null on the CPU);
--precision bf16|f16 trains under torch.autocast (f16 with a GradScaler), as
attune-trainer's mixed precision keeps f32 master weights; evaluation stays
fp32 on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    get_linear_schedule_with_warmup,
)
from transformers.utils import logging as hf_logging  # noqa: E402


NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight")


def read_jsonl(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> int:
    assets = Path(os.environ.get("ATTUNE_ASSETS", "/var/cache/attune/assets/v1"))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, required=True, help="optimizer steps")
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--cache-dir", type=Path, default=assets / "hf-cache")
    parser.add_argument("--train", type=Path, default=assets / "bbc" / "train.jsonl")
    parser.add_argument("--validation", type=Path, default=assets / "bbc" / "validation.jsonl")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--warmup-steps", type=int, default=0)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", choices=["fp32", "bf16", "f16"], default="fp32")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be >= 1")

    hf_logging.set_verbosity_error()  # no "newly initialized weights" notice
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    train = read_jsonl(args.train)
    validation = read_jsonl(args.validation)
    labels = sorted({row["label"] for row in train})
    label_id = {label: i for i, label in enumerate(labels)}

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(args.model, cache_dir=args.cache_dir, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model,
        cache_dir=args.cache_dir,
        local_files_only=True,
        dtype=torch.float32,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id=label_id,
    )
    device = torch.device(args.device)
    model.to(device)
    cuda = device.type == "cuda"

    def now() -> float:
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    load_seconds = now() - start
    autocast_dtype = {"bf16": torch.bfloat16, "f16": torch.float16}.get(args.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "f16")

    def encode(rows: list[dict[str, str]]) -> dict[str, torch.Tensor]:
        return tokenizer(
            [row["text"] for row in rows],
            padding=True,
            truncation=True,
            max_length=args.max_length,
            return_tensors="pt",
        ).to(device)

    # Same grouping as attune-trainer (and trainer/python/torch_losses.py): decaying biases and
    # LayerNorm weights as well would make this a different optimizer, not a slower/faster one.
    named = list(model.named_parameters())
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for n, p in named if not any(k in n for k in NO_DECAY)], "weight_decay": args.weight_decay},
            {"params": [p for n, p in named if any(k in n for k in NO_DECAY)], "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.999),
        eps=1e-8,
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, args.warmup_steps, args.steps)
    model.train()
    order: list[int] = []
    timed_from = now()
    for step in range(args.steps):
        if step == 1:
            timed_from = now()
        if len(order) < args.batch_size:
            epoch = list(range(len(train)))
            rng.shuffle(epoch)
            order += epoch
        rows = [train[i] for i in order[: args.batch_size]]
        del order[: args.batch_size]
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(**encode(rows)).logits
        target = torch.tensor([label_id[row["label"]] for row in rows], device=device)
        loss = torch.nn.functional.cross_entropy(logits.float(), target)
        scaler.scale(loss).backward()
        if args.max_grad_norm > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    timed_steps = args.steps - 1 if args.steps > 1 else 1
    train_samples_per_s = timed_steps * args.batch_size / (now() - timed_from)

    model.eval()
    correct = 0
    start = now()
    with torch.inference_mode():
        for i in range(0, len(validation), args.eval_batch_size):
            rows = validation[i : i + args.eval_batch_size]
            predicted = model(**encode(rows)).logits.argmax(dim=-1).tolist()
            correct += sum(p == label_id[row["label"]] for p, row in zip(predicted, rows, strict=True))
    infer_samples_per_s = len(validation) / (now() - start)

    print(
        json.dumps(
            {
                "train_samples_per_s": round(train_samples_per_s, 3),
                "infer_samples_per_s": round(infer_samples_per_s, 3),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "load_seconds": round(load_seconds, 3),
                "accuracy": round(correct / len(validation), 4),
                "steps": args.steps,
                "device": args.device,
                "precision": args.precision,
                "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
