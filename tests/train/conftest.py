"""Fixtures for the training tests: one tiny synthetic world (real files in real formats)
with its tokenizer per session, and tiny stage configs that read it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # trainhelpers


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    from xgenmm.synth.corpus import build_world_tokenizer
    from xgenmm.synth.generate import WorldSize, generate_world

    out = tmp_path_factory.mktemp("train-world") / "world"
    size = WorldSize(captions=16, interleaved=4, shard_size=8, sft_single=24, sft_multi=6, dpo=12, safety=8,
                     vqa_per_kind=1, caption_eval=1, mc=1, pope_images=1, multi_per_kind=1, grounding=1,
                     safety_eval=1, vqa_train_per_kind=1, caption_train=1)
    generate_world(out, seed=0, size=size, progress=False)
    build_world_tokenizer(out, vocab_size=400)
    # A weighted pretraining mixture of the world's caption and interleaved shards.
    manifest = json.loads((out / "manifest.json").read_text())
    sources = [{"path": p, "weight": 0.7} for p in manifest["paths"]["captions"]]
    sources += [{"path": p, "weight": 0.3} for p in manifest["paths"]["interleaved"]]
    (out / "pretrain_mixture.yaml").write_text(json.dumps({"seed": 1, "sources": sources}))
    return out
