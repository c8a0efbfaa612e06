"""Fixtures for the eval tests: a tiny world in the synthetic world's layouts and a tiny
random model in squash mode (one crop per image) for speed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from eval_datasets import write_mc_tsv, write_world_vqa


@pytest.fixture()
def world(tmp_path) -> Path:
    root = tmp_path / "world"
    write_world_vqa(root / "world_vqa", 4)
    write_world_vqa(root / "world_vqa_train", 6, start=100)
    write_mc_tsv(root / "world_mc" / "mc.tsv", 3)
    return root


@pytest.fixture(scope="session")
def squash_model_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny random model with its processor saved as a model directory (squash: 1 crop)."""
    from xgenmm.model import XGenMM, XGenMMProcessor
    from xgenmm.model.image_processing import XGenMMImageProcessor
    from xgenmm.model.presets import preset_config

    cfg = preset_config("tiny", tokenizer=tiny_tokenizer, image={"mode": "squash"})
    torch.manual_seed(0)
    model = XGenMM(cfg).eval()
    proc = XGenMMProcessor(XGenMMImageProcessor(cfg.image.image_size, "squash", cfg.image.grids), tiny_tokenizer,
                           cfg.resampler.num_latents)
    out = tmp_path_factory.mktemp("model")
    model.save_pretrained(out, processor=proc)
    return out


@pytest.fixture(scope="session")
def squash_model(squash_model_dir):
    from xgenmm.model import XGenMM, XGenMMProcessor

    return XGenMM.from_pretrained(squash_model_dir).eval(), XGenMMProcessor.from_pretrained(squash_model_dir)
