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
from ..model.template import DEFAULT_SYSTEM_PROMPT
from ..train.build import processor_for
from .vision_pretrain import cell_facts, scene_facts

log = logging.getLogger("xgenmm.demo")


def caption_records(world_dir: Path):
    """(sample id, PIL image, scene metadata) for each image of the world's caption shards, read
    with the data subsystem's WebDataset source (the same reader the pretraining stage uses)."""
    manifest = json.loads((world_dir / "manifest.json").read_text())
    shards = [str(world_dir / p) for p in manifest["paths"]["captions"]]
    for raw in open_source(SourceConfig(path=shards, shuffle=False)).iterate(0):
        rec = raw.record()
        scene = rec.get("scene")
        if scene is None:
            raise ValueError(f"{raw.id}: caption sample has no scene metadata (json member); regenerate the world")
        image = load_image(rec["image"].data if rec["image"].data is not None else rec["image"].path, name=raw.id)
        yield raw.id, image, scene


def caption_images(world_dir: Path, image_processor: XGenMMImageProcessor, limit: int | None = None) -> list:
    """[(crop [3, S, S], facts)] from the world's caption shards, read with the data
    subsystem's WebDataset source (the same reader the pretraining stage uses).

    A squash or pad processor gives one item per image with the scene's facts. An anyres
    processor whose grid cuts the canvas into the scene's cells gives one item per tile that
    holds something, with that cell's facts (no position: a tile does not know where it is),
    plus one empty tile per image, so that the tower also learns what "nothing" looks like."""
    num_cells = json.loads((world_dir / "manifest.json").read_text())["world"]["grid"] ** 2
    items = []
    for sample_id, image, scene in caption_records(world_dir):
        crops = image_processor.preprocess_one(image)
        if image_processor.mode != "anyres":
            items.append((crops[0], scene_facts(scene)))
        else:
            if crops.shape[0] != 1 + num_cells:
                raise ValueError(f"{sample_id}: {crops.shape[0] - 1} anyres tiles, but the world has {num_cells} cells; "
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


WHITEN_EPS = 1e-4  # whiten_projection: variance floor, as a share of the largest direction's
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


@torch.no_grad()
def whiten_projection(model: XGenMM, pixel_values: list, image_sizes: list, eps: float = WHITEN_EPS, seed: int = 0) -> dict:
    """Data-dependent initialisation of the resampler's output projection: over the given
    images, its tokens come out centred and whitened (unit variance along every principal
    direction of the projection's input, eps-regularised), turned into the LM's width by a
    seeded random orthonormal map. The architecture is unchanged; only the projection's
    starting weight and bias are.

    Why the demo needs it: the frozen tower's features (and so a fresh resampler's) are
    dominated by colour: over the world's tiles the top four principal directions hold about
    90% of the variance, shape and word directions about 0.1-1% each. A linear probe reads every
    cell's content from them (>= 0.99), but the tiny LM, whose RMSNorm sees mostly colour,
    learns to read shape and words only slowly; with the same tokens whitened it reads words
    within 100-300 steps.

    Group position embeddings (`resampler.group_positions`), when the model has them, are set
    to orthogonal directions of the LM's width that the whitened tokens do not use, each as
    long as an average whitened token: what a tile holds and where it is come to the LM as two
    separable parts of its token. Image position embeddings stay zero (see
    `place_image_positions`). Returns
    {"top4_variance_share": share of the projection input's variance in its top four
    principal directions}."""
    proj = model.vision_tokenizer.projection
    seen = []
    hook = proj.register_forward_hook(lambda mod, args, out: seen.append(args[0].reshape(-1, args[0].shape[-1])))
    try:
        for b in range(0, len(pixel_values), 64):
            model.encode_images(pixel_values[b : b + 64], image_sizes[b : b + 64])
    finally:
        hook.remove()
    z = torch.cat(seen).double()
    if z.shape[0] < 2 * z.shape[1]:
        raise ValueError(f"whiten_projection: {z.shape[0]} resampler tokens for a {z.shape[1]}-wide projection; "
                         "give more images")
    mean = z.mean(0)
    variance, directions = torch.linalg.eigh(torch.cov((z - mean).T))
    variance = variance.clamp(min=0)
    scale = 1.0 / torch.sqrt(variance + eps * variance.max())
    g = torch.Generator().manual_seed(seed)
    rotation = torch.linalg.qr(torch.randn(proj.out_features, proj.out_features, generator=g, dtype=torch.float64))[0]
    weight = rotation[:, : z.shape[1]] @ torch.diag(scale) @ directions.T  # [out, in]
    proj.weight.copy_(weight.to(proj.weight.dtype))
    proj.bias.copy_((-weight @ mean).to(proj.bias.dtype))
    slots = model.vision_tokenizer.group_pos
    if slots is not None:
        width = z.shape[1]
        if width + slots.shape[0] > proj.out_features:
            raise ValueError(f"whiten_projection: {slots.shape[0]} group positions do not fit beside {width} whitened "
                             f"directions in the LM's width {proj.out_features}")
        length = ((z - mean) @ directions @ torch.diag(scale)).norm(dim=1).mean()
        slots.copy_((rotation[:, width:width + slots.shape[0]].T * length).to(slots.dtype))
    return {"top4_variance_share": float(variance.flip(0)[:4].sum() / variance.sum())}


@torch.no_grad()
def place_image_positions(model: XGenMM, pixel_values: list, image_sizes: list) -> float:
    """Set the image position embeddings (`resampler.image_positions`: a sample's 2nd, 3rd, ...
    image) to orthogonal directions of the LM's width that neither the resampler's output
    projection nor the group position embeddings use, each as long as an average image token
    over the given images. Returns that length.

    The demo sets them when multi-image SFT begins, from the single-image model, and keeps
    them zero (a no-op) before: set at initialisation, pretraining's interleaved documents
    carried them, and the single-image SFT models came out worse (VQA 0.889 / 0.884 against
    0.945 / 0.895 for seeds 0 / 1; 4-shot captioning below 0-shot for seed 1)."""
    places = model.vision_tokenizer.image_pos
    if places is None:
        raise ValueError("place_image_positions: the model has no image position embeddings (resampler.image_positions is 0)")
    proj, slots = model.vision_tokenizer.projection, model.vision_tokenizer.group_pos
    used = proj.weight.detach().double() if slots is None else torch.cat((proj.weight.detach().double(), slots.detach().double().T), 1)
    q, r = torch.linalg.qr(used, mode="complete")
    rank = int((r.diagonal().abs() > 1e-8 * r.diagonal().abs().max()).sum())
    if rank + places.shape[0] > proj.out_features:
        raise ValueError(f"place_image_positions: {places.shape[0]} image positions do not fit beside the {rank} "
                         f"directions the image tokens use in the LM's width {proj.out_features}")
    tokens = torch.cat([model.encode_images(pixel_values[b:b + 64], image_sizes[b:b + 64])[0]
                        for b in range(0, len(pixel_values), 64)])
    length = tokens.double().norm(dim=1).mean()
    places.copy_((q[:, rank:rank + places.shape[0]].T * length).to(places.dtype))
    return float(length)


def whitening_images(world_dir: Path, image_processor: XGenMMImageProcessor, limit: int = 500) -> tuple[list, list]:
    """([crops of one image], [(width, height)]) of the first `limit` caption images, processed as
    the model will see them (base crop and tiles)."""
    pixels, sizes = [], []
    for _, image, _ in caption_records(world_dir):
        pixels.append(image_processor.preprocess_one(image))
        sizes.append(image.size)
        if len(pixels) >= limit:
            break
    return pixels, sizes


def save_initial(model: XGenMM, tokenizer, out_dir: Path, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT) -> Path:
    """The model directory (config, weights, processor files) the pretraining stage loads, its
    processor's chat turns led by `system_prompt` (None: no system turn), and so every later
    stage's, whose processors are saved from this one."""
    processor = processor_for(model, tokenizer)
    processor.system_prompt = system_prompt
    model.save_pretrained(out_dir, processor=processor)
    return out_dir
