#!/usr/bin/env python3
"""End-to-end checks of check_export.py and torch_losses.py on a tiny BERT.

Builds a 2-layer BertForSequenceClassification with transformers
(save_pretrained, plus the MiniLM tokenizer files from $ATTUNE_ASSETS), then
runs both scripts as a user would. Run with the assets venv:

    $ATTUNE_ASSETS/venv/bin/python trainer/python/selftest.py

Ends with "N passed, N failed"; exit status 1 when any check failed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification  # noqa: E402

HERE = Path(__file__).resolve().parent
MINILM = "models--sentence-transformers--all-MiniLM-L6-v2"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
TEXTS = [
    "The shares rose sharply.",
    "",
    "A late goal settled the match.",
    "New phones were shown at the fair. " * 40,
]


def tokenizer_dir() -> Path:
    cache = Path(os.environ.get("ATTUNE_ASSETS", "/var/cache/attune/assets/v1")) / "hf-cache" / MINILM
    return cache / "snapshots" / (cache / "refs" / "main").read_text().strip()


def tiny_model(out: Path) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=3,
        id2label={0: "business", 1: "sport", 2: "tech"},
        label2id={"business": 0, "sport": 1, "tech": 2},
    )
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        shutil.copyfile(tokenizer_dir() / name, out / name)
    return model


def run(script: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(HERE / script), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True)


def check_export_cases(tmp: Path) -> list[tuple[str, bool]]:
    export = tmp / "export"
    model = tiny_model(export)
    texts = tmp / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    tokenizer = AutoTokenizer.from_pretrained(export)
    with torch.inference_mode():
        enc = tokenizer(TEXTS, padding=True, truncation=True, max_length=512, return_tensors="pt")
        logits = model(**enc).logits.tolist()
    good = tmp / "good.json"
    good.write_text(json.dumps({"logits": logits}))
    bad = tmp / "bad.json"
    logits[2][1] += 1e-3
    bad.write_text(json.dumps({"logits": logits}))
    unlabelled = tmp / "unlabelled"
    shutil.copytree(export, unlabelled)
    config = json.loads((unlabelled / "config.json").read_text())
    del config["label2id"]
    (unlabelled / "config.json").write_text(json.dumps(config))

    ok = run("check_export.py", "--export", export, "--texts", texts, "--logits", good)
    off = run("check_export.py", "--export", export, "--texts", texts, "--logits", bad)
    short = run(
        "check_export.py",
        "--export",
        export,
        "--texts",
        texts,
        "--logits",
        good,
        "--max-length",
        "16",
        "--atol",
        "1e-6",
    )
    nolabels = run("check_export.py", "--export", unlabelled, "--texts", texts, "--logits", good)
    return [
        ("check_export: own logits pass", ok.returncode == 0 and "OK:" in ok.stdout),
        ("check_export: predictions printed", all(f"{i:>4}  " in ok.stdout for i in range(len(TEXTS)))),
        ("check_export: 1e-3 off fails", off.returncode == 1 and "row 2:" in off.stdout),
        ("check_export: other truncation fails", short.returncode == 1),
        ("check_export: missing label2id rejected", nolabels.returncode == 2 and "label2id" in nolabels.stderr),
    ]


def torch_losses_cases(tmp: Path) -> list[tuple[str, bool]]:
    init = tmp / "init"
    model = tiny_model(init)
    gen = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1000, 30000, (4, 12), generator=gen)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 8:] = 0
    input_ids[1, 8:] = 0
    labels = torch.tensor([0, 1, 2, 1])
    line = json.dumps(
        {"input_ids": input_ids.tolist(), "attention_mask": attention_mask.tolist(), "labels": labels.tolist()}
    )
    batches = tmp / "batches.jsonl"
    batches.write_text((line + "\n") * 4)
    config = tmp / "config.json"
    config.write_text(
        json.dumps(
            {"learning_rate": 1e-3, "weight_decay": 0.01, "warmup_steps": 1, "total_steps": 4, "max_grad_norm": 1.0}
        )
    )
    # Weight decay 0.5, on every parameter or (the default) not on biases and LayerNorm weights.
    heavy, heavy_all = tmp / "heavy.json", tmp / "heavy-all.json"
    base = {"learning_rate": 1e-3, "warmup_steps": 1, "total_steps": 4, "max_grad_norm": 1.0}
    heavy.write_text(json.dumps({**base, "weight_decay": 0.5}))
    heavy_all.write_text(json.dumps({**base, "weight_decay": 0.5, "decay_all": True}))
    outs = [tmp / "losses1.json", tmp / "losses2.json", tmp / "heavy-out.json", tmp / "heavy-all-out.json"]
    configs = [config, config, heavy, heavy_all]
    runs = [
        run("torch_losses.py", "--init", init, "--batches", batches, "--config", c, "--out", o)
        for c, o in zip(configs, outs, strict=True)
    ]
    if any(r.returncode != 0 for r in runs):
        print(next(r for r in runs if r.returncode != 0).stderr[-2000:], file=sys.stderr)
        return [("torch_losses: runs", False)]
    first, second, spared, decayed = (json.loads(o.read_text()) for o in outs)
    with torch.no_grad():
        direct = F.cross_entropy(model(input_ids=input_ids, attention_mask=attention_mask).logits, labels).item()
    losses, lrs = first["losses"], first["learning_rates"]
    return [
        ("torch_losses: one loss per batch", len(losses) == 4),
        ("torch_losses: deterministic", first == second),
        ("torch_losses: step 0 loss is the plain forward loss", abs(losses[0] - direct) < 1e-6),
        ("torch_losses: warmup step has lr 0, no change", lrs[0] == 0.0 and losses[1] == losses[0]),
        (
            "torch_losses: linear schedule",
            all(abs(a - b) < 1e-12 for a, b in zip(lrs[1:], [1e-3, 2e-3 / 3, 1e-3 / 3], strict=True)),
        ),
        ("torch_losses: loss falls", losses[3] < losses[2] < losses[1]),
        (
            "torch_losses: decay_all also decays biases and LayerNorm weights",
            # The first update (step 2's) is the first that decays: losses differ from step 3 on.
            spared["losses"][:2] == decayed["losses"][:2]
            and all(a != b for a, b in zip(spared["losses"][2:], decayed["losses"][2:], strict=True)),
        ),
    ]


def main() -> int:
    suites: list[Callable[[Path], list[tuple[str, bool]]]] = [check_export_cases, torch_losses_cases]
    results: list[tuple[str, bool]] = []
    for suite in suites:
        with tempfile.TemporaryDirectory() as tmp:
            results += suite(Path(tmp))
    for name, passed in results:
        print(f"{'ok  ' if passed else 'FAIL'} {name}")
    failed = sum(not passed for _, passed in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
