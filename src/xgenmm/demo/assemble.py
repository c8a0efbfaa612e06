"""The demo's first stages around the trainer: the world's caption images as (crop, facts)
pairs for the SigLIP stage, and the initial XGenMM (pretrained vision tower, fresh resampler
and LLM) saved as a model directory that the pretraining stage starts from."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..data.sources import SourceConfig, open_source
from ..model import XGenMM
from ..model.image_processing import XGenMMImageProcessor, load_image
from ..model.presets import preset_config
from ..train.build import processor_for
from .vision_pretrain import cell_facts, scene_facts

log = logging.getLogger("xgenmm.demo")


def caption_images(world_dir: Path, image_processor: XGenMMImageProcessor, limit: int | None = None) -> list:
    """[(crop [3, S, S], facts)] from the world's caption shards, read with the data
    subsystem's WebDataset source (the same reader the pretraining stage uses).

    A squash or pad processor gives one item per image with the scene's facts. An anyres
    processor whose grid cuts the canvas into the scene's cells gives one item per tile that
    holds something, with that cell's facts (no position: a tile does not know where it is),
    plus one empty tile per image, so that the tower also learns what "nothing" looks like."""
    manifest = json.loads((world_dir / "manifest.json").read_text())
    shards = [str(world_dir / p) for p in manifest["paths"]["captions"]]
    num_cells = manifest["world"]["grid"] ** 2
    items = []
    for raw in open_source(SourceConfig(path=shards, shuffle=False)).iterate(0):
        rec = raw.record()
        scene = rec.get("scene")
        if scene is None:
            raise ValueError(f"{raw.id}: caption sample has no scene metadata (json member); regenerate the world")
        image = load_image(rec["image"].data if rec["image"].data is not None else rec["image"].path, name=raw.id)
        crops = image_processor.preprocess_one(image)
        if image_processor.mode != "anyres":
            items.append((crops[0], scene_facts(scene)))
        else:
            if crops.shape[0] != 1 + num_cells:
                raise ValueError(f"{raw.id}: {crops.shape[0] - 1} anyres tiles, but the world has {num_cells} cells; "
                                 "the grid must cut the canvas into its cells")
            facts = cell_facts(scene, num_cells)
            keep = [c for c in range(num_cells) if facts[c]]
            empty = [c for c in range(num_cells) if not facts[c]]
            if empty:  # which empty cell rotates from image to image
                keep.append(empty[len(items) % len(empty)])
            items.extend((crops[1 + c], facts[c]) for c in keep)
        if limit is not None and len(items) >= limit:
            break
    return items


LATENTS_INIT_SCALE = 0.05  # the resampler's latents start at 0.05 x N(0, 1) (the release: N(0, 1))


def initial_model(tokenizer, overrides: dict, seed: int) -> XGenMM:
    """A fresh XGenMM shaped by `overrides` on the tiny preset, sized to `tokenizer`.

    The resampler's latents are scaled down at init: at N(0, 1) they dominate the residual
    stream over the (small, freshly initialised) attention outputs, so every image comes out
    as nearly the same tokens and the LLM first learns to ignore them, a plateau the release
    leaves behind over 100B tokens and the demo cannot afford. Scaled, the resampler's output
    carries the image from the first step."""
    config = preset_config("tiny", tokenizer=tokenizer, **overrides)
    torch.manual_seed(seed)
    model = XGenMM(config)
    with torch.no_grad():
        model.vision_tokenizer.latents.mul_(LATENTS_INIT_SCALE)
    return model


def save_initial(model: XGenMM, tokenizer, out_dir: Path, system_prompt: str | None = None) -> Path:
    """The model directory (config, weights, processor files) the pretraining stage loads.
    `system_prompt` replaces the default one in the processor (and so in every later stage,
    whose processors are saved from this one)."""
    processor = processor_for(model, tokenizer)
    if system_prompt is not None:
        processor.system_prompt = system_prompt
    model.save_pretrained(out_dir, processor=processor)
    return out_dir
