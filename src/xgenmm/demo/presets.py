"""The demo's presets: how big the world is, how the tiny model is shaped for it, and how long
each stage trains. `full` (the default) is sized to learn the world in about ten minutes on
two CPU cores; `quick` is the CI smoke test (every stage, every file, a few minutes).

The model is the `tiny` preset re-shaped for the world (see `model_overrides`): any-resolution
processing cuts the 96-pixel canvas into its 3x3 cells, one 32-pixel tile per cell (patch 8,
so 4x4 tokens per tile and a bold glyph of a word spans two patches), each tile read by the
resampler into one token: what a cell holds is in its tile's tokens, where it is is the tile's
place in the sequence. The resampler's output projection starts whitened on the world's
images (`assemble.whiten_projection`) and the resampler then stays frozen (the stage YAMLs
in configs/demo say why).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..synth.generate import WorldSize
from .vision_pretrain import VisionPretrainConfig

STAGES = ("vision", "pretrain", "sft_single", "sft_multi", "dpo", "safety")  # in order; `vision` is the SigLIP stage


def model_overrides(canvas: int = 96, grid: int = 3, patch: int = 8, width: int = 64, latents: int = 1,
                    tile_positions: bool = True, image_positions: int = 8) -> dict:
    """`preset_config("tiny", tokenizer=..., **model_overrides())` sections: vision tower,
    resampler and image settings aligned with the world's canvas and cells.

    Any-resolution processing with one grid, the canvas itself, cuts a `canvas`-pixel image
    into its `grid` x `grid` cells, one tile (one crop of the tower) per cell, after the base
    crop; with `tiles` token grouping each tile goes through the resampler on its own. So the
    resampler only has to say what one cell holds (which even its frozen random init, with a
    whitened projection, does), and where a thing is becomes which tile it is in: the tiles'
    order in the LM's sequence, which the LM learns.
    (One 96-pixel crop for the whole scene asks the resampler to route each cell's content to
    its own latents; its attention starts uniform and stays so for longer than the demo can
    train, and every question about a cell stays at chance.)

    `tile_positions` gives each token group (the base crop, then the tiles) a position
    embedding (`resampler.group_positions`), which `whiten_projection` sets orthogonal to the
    tokens' content: the LM's rotary positions are relative only, and telling "the 4th tile
    after the image starts" from them is slow for a tiny LM (where-questions lagged far behind
    what-questions without it).

    `image_positions` gives a sample's 2nd to (image_positions + 1)-th images an embedding
    each (`resampler.image_positions`; the first image none). They stay zero until
    multi-image SFT begins, where `place_image_positions` sets them: with relative positions
    only, "in which image is there a red circle?" stayed at chance after multi-image SFT for
    two seeds of three (README)."""
    tile = canvas // grid
    return {
        "vision": {"hf_config": dict(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=2,
                                     num_attention_heads=2, image_size=tile, patch_size=patch)},
        "resampler": {"dim": width, "out_dim": 128, "num_latents": latents, "depth": 2, "heads": 4, "dim_head": 32,
                      "ff_mult": 2, "group_positions": 1 + grid * grid if tile_positions else 0,
                      "image_positions": image_positions},
        "image": {"image_size": tile, "mode": "anyres", "token_grouping": "tiles", "grids": [[canvas, canvas]]},
    }


@dataclass
class DemoPreset:
    name: str  # full or quick
    world_preset: str  # the synthetic world's difficulty preset (easy, standard, hard)
    world_size: WorldSize  # samples per data set
    tokenizer_vocab: int  # BPE vocabulary of the world's tokenizer
    vision: VisionPretrainConfig  # SigLIP stage budget
    steps: dict  # trainer stage -> optimiser steps (overrides schedule.max_steps)
    batch: dict = field(default_factory=dict)  # trainer stage -> rows per batch (overrides data.batch.batch_size)
    eval_batch: int = 64  # generation batch size of the evaluations
    dpo_heldout: int = 100  # preference pairs held out of DPO training to measure chosen-over-rejected accuracy
    # DPO trains on the training pairs its starting model ranks wrong or by less than this many
    # nats (chosen minus rejected log-probability; pipeline.mine_dpo_pairs)
    dpo_mine_margin: float = 1.0
    # Training pairs held out of DPO training to choose its final step by their preference
    # accuracy (dpo.select_source, train/select.py); 0: the last step is the final model
    dpo_select: int = 0
    few_shot: int = 4  # demonstrations of the base model's few-shot evaluation
    mix_single: int = 0  # single-image SFT samples mixed into multi-image SFT (per epoch)
    mix_sft_into_safety: int = 0  # SFT samples mixed into safety tuning (the recipe mixes 5k into VLGuard's 2k)
    # The chat's system prompt (None: no system turn). The release's default costs ~30 of a
    # world sample's ~100 tokens, and even a 9-token one slows the tiny LM's learning to read
    # the image tokens (measured: words read after 200 steps instead of 100, shape and
    # position far slower).
    system_prompt: str | None = None
    whiten_images: int = 500  # caption images for whiten_projection (0: keep the projection's random init)
    budget_s: float = 600.0  # wall-time budget of the whole run on two CPU cores (the scorecard's time target)
    all_targets: bool = True  # the scorecard checks every target (quick: the time budget only)
    model_shape: dict = field(default_factory=dict)  # model_overrides() arguments (canvas, grid, patch, width, latents)
    trainer_overrides: dict = field(default_factory=dict)  # trainer stage -> extra `key.sub=value` overrides


FULL = DemoPreset(
    name="full",
    # The easy world, aiming at the targets (>= 90% VQA, >= 75% on every question kind) within
    # minutes of CPU training; not reached yet (see the scorecard). `--world standard` or
    # `hard` runs the same recipe on a harder world.
    world_preset="easy",
    # captions, interleaved, shard_size, sft_single, sft_multi, dpo, safety, vqa/kind, caption_eval, mc,
    # pope_images, multi/kind, grounding, safety_eval, vqa_train/kind, caption_train
    # Held-out sets sized so that a question kind's score is not a coin toss around its target:
    # 80 VQA questions per kind, 200 POPE probes, 60 multi-image questions per kind, 200
    # safety prompts and 400 preference pairs (held out of the world's 1,600).
    world_size=WorldSize(2000, 200, 500, 4000, 8000, 1600, 400, 80, 40, 60, 100, 60, 40, 200, 6, 20),
    tokenizer_vocab=640,
    vision=VisionPretrainConfig(max_steps=400),
    steps={"pretrain": 200, "sft_single": 1600, "sft_multi": 1000, "dpo": 20, "safety": 100},
    # Single-image SFT: 1,600 steps of 64 one-question rows (the world writes each question as
    # a sample of its own, sft/single.json, synth.datasets.write_sft_single; about a quarter more
    # tokens a step than the 24 conversations of two or three questions before, which gave VQA
    # 0.945 / 0.895 for seeds 0 / 1 against 0.855 / 0.879 at 1,000 steps); a step costs what its
    # tokens do.
    batch={"pretrain": 8, "sft_single": 64, "sft_multi": 32, "dpo": 16, "safety": 32},
    dpo_heldout=400,
    # DPO's final step is the one of steps 0, 1, ..., 20 (configs/demo/dpo.yaml) with the highest
    # preference accuracy on 200 training pairs held out of its training (dpo.select_source).
    # Without it, 20 steps on the mined pairs overshot for some models (multi-image SFT at
    # 1e-3): seed 0 went from saying "yes" to absent objects to saying "no" to present ones
    # (POPE accuracy 0.705 -> 0.485, held-out preference accuracy 0.898 -> 0.893). Choosing from
    # every fifth step, it kept the unchanged model for three of today's five (steps 0 / 5 / 0 /
    # 15 / 0); from every step, 3 / 4 / 1 / 12 / 2. docs/demo-recipe.md.
    dpo_select=200,
    # Multi-image SFT: 1,000 steps over 8,000 multi-image conversations and the 4,000
    # single-image ones (`sft/single_conversations.json`: an image's two to four questions as
    # the turns of one conversation) per epoch. The earlier 200 steps over 1,000 (+ 1,500
    # single) left which-image and same-colour at chance and single-image VQA 2.3 / 1.1 / 1.6
    # points lower (seeds 0 / 1 / 2); 1,000 steps over 8,000 learnt same-colour, and with image
    # position embeddings (model_overrides) which-image too. Of the single-image share, from the
    # same five single-image models (seeds 0-4), single-image drop / multi-image score: 2,000
    # one-question samples 3.9 / 3.6 / 2.5 / 5.9 / 0.9 points and 0.812 / 0.887 / 0.729 / 0.896
    # / 0.887; 2,000 conversations 1.8 / 2.9 / 2.7 / 4.3 / 1.3 and 0.817 / 0.879 / 0.808 /
    # 0.887 / 0.812; all 4,000 see docs/demo-recipe.md ("Multi-image SFT and DPO").
    mix_single=4000,
    mix_sft_into_safety=400,
)

QUICK = replace(
    FULL,
    name="quick",
    # The same easy world, model and batches, small: the smoke test must show learning on the
    # held-out questions within three minutes. 400 SFT steps of one-question samples (1:11 on
    # a 2-core AMD EPYC host, 1:59-2:10 on two cores of a Xeon host) give colour 0.83 / 0.67 /
    # 0.67 against chance 0.25 and VQA 0.61 / 0.64 / 0.60 against 0.28 for seeds 0 / 1 / 2
    # (0.44 / 0.44 / 0.50 with the earlier conversations; 160 steps of those gave colour 0.29
    # and VQA 0.31 for seed 0, near chance).
    world_size=WorldSize(300, 30, 150, 800, 200, 120, 100, 24, 8, 16, 12, 8, 8, 20, 4, 8),
    vision=VisionPretrainConfig(max_steps=100),
    steps={"pretrain": 20, "sft_single": 400, "sft_multi": 15, "dpo": 8, "safety": 8},
    dpo_heldout=40,
    dpo_select=20,
    mix_single=200,
    mix_sft_into_safety=120,
    budget_s=180.0,
    all_targets=False,
)

PRESETS = {"full": FULL, "quick": QUICK}


def get_preset(name: str) -> DemoPreset:
    if name not in PRESETS:
        raise ValueError(f"unknown demo preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
