"""Shared test fixtures: tiny tokenizer, tiny model and processor, images. Everything is
built from config with fixed seeds; nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

DATA = Path(__file__).parent / "data"
RELEASE_FIXTURES = DATA / "release_fixtures"

CORPUS = [
    "a red circle in the top left corner", "a blue square at the bottom right", "what colour is the circle?",
    "how many shapes are there?", "is there a green triangle?", "yes", "no", "two", "three", "read the word",
    "the word is cat", "where is the star?", "describe the image", "a yellow star and a purple cross",
]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from xgenmm.model.tokenizer import train_tokenizer

    return train_tokenizer(CORPUS * 20, vocab_size=400)


@pytest.fixture(scope="session")
def tiny_config(tiny_tokenizer):
    from xgenmm.model.presets import preset_config

    return preset_config("tiny", tokenizer=tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_processor(tiny_tokenizer, tiny_config):
    from xgenmm.model import XGenMMProcessor
    from xgenmm.model.image_processing import XGenMMImageProcessor

    img = tiny_config.image
    return XGenMMProcessor(XGenMMImageProcessor(img.image_size, img.mode, img.grids), tiny_tokenizer,
                           tiny_config.resampler.num_latents)


@pytest.fixture()
def tiny_model(tiny_config):
    from xgenmm.model import XGenMM

    torch.manual_seed(0)
    model = XGenMM(tiny_config).eval()
    # Random init leaves the LM-head bias at zero; give it values so that tests see it.
    with torch.no_grad():
        model.lang_model.get_output_embeddings().bias.normal_(0, 0.5)
    return model


def make_image(w: int, h: int, seed: int = 0) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    arr = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy()
    return Image.fromarray(arr, "RGB")


# One small world per test session, written through the `synth` command's own parser.
@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    import argparse

    from xgenmm.synth.commands import register

    parser = argparse.ArgumentParser(prog="xgenmm")
    register(parser.add_subparsers(dest="command"))
    out = tmp_path_factory.mktemp("world") / "w"
    args = parser.parse_args(["synth", "--out", str(out), "--seed", "0", "--preset", "standard", "--size", "small"])
    assert args.func(args) == 0
    return out


@pytest.fixture(scope="session")
def small_manifest(small_world):
    import json

    return json.loads((small_world / "manifest.json").read_text())
