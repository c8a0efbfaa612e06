"""Tiny stage configs over the test world."""

from __future__ import annotations

import json
from pathlib import Path

SOURCES = {"pretrain": "pretrain_mixture.yaml", "sft": "sft/single.json", "dpo": "dpo/pairs.jsonl",
           "safety": "safety/train.json"}


def tiny_overrides(world: Path, run_dir: Path, stage: str = "sft", steps: int = 3, **extra) -> list[str]:
    """`key=value` overrides of a fast tiny run: 2 rows per micro-batch, a smaller LLM,
    fp32 on CPU, no TensorBoard or plot unless asked."""
    ov = {
        "stage": stage, "run_dir": str(run_dir), "seed": 0,
        "model.preset": "tiny", "model.tokenizer": str(world / "tokenizer"),
        "model.preset_overrides": {"text": {"num_hidden_layers": 2}},
        "data.source": str(world / SOURCES[stage]), "data.encode.max_length": 384,
        "data.batch.batch_size": 2,
        "optim.lr": 1e-3, "schedule.max_steps": steps, "schedule.warmup_steps": 1,
        "runtime.device": "cpu", "checkpoint.every_steps": 0, "checkpoint.resume": "auto",
        "logging.tensorboard": False, "logging.plot": False, "logging.progress": False,
    }
    if stage == "pretrain":
        ov["model.image_mode"] = "squash"
    if stage in ("dpo", "safety"):
        ov.update({"lora.enabled": True, "lora.r": 4, "lora.alpha": 8.0, "lora.dropout": 0.0,
                   "trainable.lang_model": False, "trainable.vision_tokenizer": False})
    ov.update(extra)
    return [f"{k}={json.dumps(v)}" for k, v in ov.items()]


def tiny_config(world: Path, run_dir: Path, stage: str = "sft", steps: int = 3, **extra):
    from xgenmm.train import load_config

    return load_config(None, tiny_overrides(world, run_dir, stage, steps, **extra))


def losses(run_dir: Path) -> dict[int, float]:
    from xgenmm.train.metrics import read_metrics

    return {r["step"]: r["loss"] for r in read_metrics(run_dir)}
