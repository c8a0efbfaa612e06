"""`generate_world`: the whole synthetic world on disk, with a manifest.

Every data set draws from its own random stream, seeded by (seed, data set name), so a data
set's content does not depend on which others were written or how large they are.
"""

from __future__ import annotations

import logging
import random
import re
import sys
from dataclasses import asdict
from pathlib import Path
from statistics import mean

from tqdm import tqdm

from ..model.template import DEFAULT_SYSTEM_PROMPT
from . import datasets as D
from . import evalsets as E
from .language import CAPTION_STYLES, QUESTION_KINDS, REFUSAL, locate_question
from .multi import MULTI_KINDS
from .sizes import SIZES, WorldSize, get_size  # noqa: F401  (SIZES, WorldSize: re-exported)
from .world import WorldConfig, get_preset
from .writers import OutputDir

log = logging.getLogger(__name__)
# 2: single-image SFT data also as conversations (paths.sft_single_conversations).
MANIFEST_VERSION = 2


def chance_levels(cfg: WorldConfig) -> dict[str, float]:
    """The score of guessing uniformly among the possible answers, per task. Captioning has
    no meaningful chance level (reported as 0)."""
    n_counts = cfg.max_objects - cfg.min_objects + 1
    vqa = {
        "colour": 1 / len(cfg.colours),
        "shape": 1 / len(cfg.shapes),
        "position": 1 / cfg.num_cells,
        "count": 1 / n_counts,
        "existence": 0.5,
        "reading": 1 / len(cfg.words),
        "locating": 1 / (cfg.num_cells * len(cfg.sizes)),
    }
    multi = {
        "more": 0.5,
        "same_colour": 0.5,
        "which_image": (1 / 2 + 1 / 3) / 2,
        "total_count": 1 / (2 * cfg.max_objects - 2 * cfg.min_objects + 1),
    }
    chance = {"world_vqa": mean(vqa.values())}
    chance.update({f"world_vqa/{k}": v for k, v in vqa.items()})
    chance["world_multi"] = mean(multi.values())
    chance.update({f"world_multi/{k}": v for k, v in multi.items()})
    chance.update(
        {
            "world_mc": 0.25,
            "world_pope": 0.5,
            "world_grounding": vqa["locating"],  # a box guessed among the possible boxes
            "world_caption": 0.0,
            "world_safety": 0.5,
        }
    )
    return {k: round(v, 4) for k, v in chance.items()}


def _words(texts) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", " ".join(texts).lower()))


def _rng(seed: int, name: str) -> random.Random:
    return random.Random(f"xgenmm-synth/{seed}/{name}")  # str seeds are hashed deterministically


# Milliseconds to write one sample of each training set (measured at the demo's size on a 2-core
# host; a multi-image sample renders two to four scenes): the largest sets are handed out first,
# so that no worker starts one late.
MS_PER_SAMPLE = {"sft_multi": 2.6, "interleaved": 3.2, "captions": 1.25, "sft_single": 1.0, "dpo": 0.9, "safety": 0.9}


def _jobs(out: OutputDir, cfg: WorldConfig, sz: WorldSize, corpus: D.Corpus, held_out_text: D.Corpus):
    """(training sets, held-out sets): name -> a function of the set's random stream that writes
    it under `out`, adds its text to `corpus` (training) or `held_out_text`, and returns its counts."""
    train = {
        "captions": lambda r: D.write_caption_shards(out, cfg, r, sz.captions, sz.shard_size, corpus),
        "interleaved": lambda r: D.write_interleaved_shards(out, cfg, r, sz.interleaved, sz.shard_size, corpus),
        "sft_single": lambda r: D.write_sft_single(out, cfg, r, sz.sft_single, corpus),
        "sft_multi": lambda r: D.write_sft_multi(out, cfg, r, sz.sft_multi, corpus),
        "dpo": lambda r: D.write_dpo(out, cfg, r, sz.dpo, corpus),
        "safety": lambda r: D.write_safety_train(out, cfg, r, sz.safety, corpus),
    }
    evals = {
        "world_vqa": lambda r: E.write_vqa(out, "eval/world_vqa", cfg, r, sz.vqa_per_kind, held_out_text),
        "world_vqa_train": lambda r: E.write_vqa(out, "eval/world_vqa_train", cfg, r, sz.vqa_train_per_kind, held_out_text),
        "world_caption": lambda r: E.write_caption(out, "eval/world_caption", cfg, r, sz.caption_eval, held_out_text),
        "world_caption_train": lambda r: E.write_caption(out, "eval/world_caption_train", cfg, r, sz.caption_train, held_out_text),
        "world_mc": lambda r: E.write_mc(out, "eval/world_mc", cfg, r, sz.mc, held_out_text),
        "world_pope": lambda r: E.write_pope(out, "eval/world_pope", cfg, r, sz.pope_images, held_out_text),
        "world_multi": lambda r: E.write_multi(out, "eval/world_multi", cfg, r, sz.multi_per_kind, held_out_text),
        "world_grounding": lambda r: E.write_grounding(out, "eval/world_grounding", cfg, r, sz.grounding, held_out_text),
        "world_safety": lambda r: E.write_safety_eval(out, "eval/world_safety", cfg, r, sz.safety_eval, held_out_text),
    }
    return train, evals


def _write_set(root: str, preset: str, sz: WorldSize, seed: int, name: str) -> tuple:
    """One data set, written in a worker process: (counts, files written, its training text,
    its held-out text), each text list in first-seen order."""
    out, corpus, held = OutputDir(root), D.Corpus(), D.Corpus()
    train, evals = _jobs(out, get_preset(preset), sz, corpus, held)
    counts = {**train, **evals}[name](_rng(seed, name))
    return counts, out.files, list(corpus), list(held)


def generate_world(
    out_dir: str | Path, seed: int = 0, preset: str = "standard", size: str | WorldSize = "full", progress: bool = True,
    workers: int = 1,
) -> dict:
    """Write the synthetic world under `out_dir` and return its manifest (also written to
    `out_dir/manifest.json`). Same arguments, same bytes, whatever `workers` is: each data set
    draws from its own random stream, and with `workers` > 1 the sets are written by that many
    forked processes (on Linux; elsewhere by this one) and their text is merged in the sets'
    order. `size` is "small", "full" or a
    `WorldSize` (tests use tiny ones)."""
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer (processes writing the data sets), got {workers!r}")
    cfg, sz = get_preset(preset), get_size(size)
    out = OutputDir(out_dir)
    # The tokenizer's corpus is the training data's text: held-out sets never shape the
    # vocabulary, so their size leaves the tokenizer, and every model trained with it, as is.
    corpus, held_out_text = D.Corpus(), D.Corpus()
    corpus.add(DEFAULT_SYSTEM_PROMPT, REFUSAL)
    train, evals = _jobs(out, cfg, sz, corpus, held_out_text)
    counts: dict[str, dict] = {}
    jobs = list(train.items()) + list(evals.items())
    bar = tqdm(total=len(jobs), desc=f"synth world ({preset}, {size})", unit="set", disable=not progress)
    # Forked workers, as torch's DataLoader forks its own on Linux: a spawned or forkserver
    # worker would import the caller's main script again (and a script without a main guard
    # would run again there). Elsewhere one process writes every set.
    if workers <= 1 or sys.platform != "linux":
        for name, job in jobs:
            counts[name] = job(_rng(seed, name))
            bar.update(1)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = mp.get_context("fork")
        results = {}
        # No more processes than sets (a pool starts all of its workers at once).
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx) as pool:
            order = sorted(train, key=lambda n: -MS_PER_SAMPLE[n] * getattr(sz, n)) + list(evals)
            futures = {pool.submit(_write_set, str(out.root), preset, sz, seed, name): name for name in order}
            for f in as_completed(futures):
                results[futures[f]] = f.result()
                bar.update(1)
        for name, _ in jobs:  # merged in the sets' order: the same corpus as one process writes
            counts[name], files, texts, held = results[name]
            out.files.update(files)
            corpus.add(*texts)
            held_out_text.add(*held)
    bar.close()
    out.write_text("text/corpus.txt", "".join(t.replace("\n", " ") + "\n" for t in corpus))
    # What the held-out sets ask must be named somewhere in the training text: a word only the
    # evaluation uses (a colour, a shape, a word to read) could not be answered by any model.
    unseen = sorted(_words(held_out_text) - _words(corpus))
    if unseen:
        log.warning("the held-out sets use %d word(s) that no training text does: %s", len(unseen), ", ".join(unseen[:20]))
    manifest = {
        "version": MANIFEST_VERSION,
        "seed": seed,
        "preset": preset,
        "size": size if isinstance(size, str) else asdict(size),
        "world": {
            **asdict(cfg),
            "cell_size": cfg.cell_size,
            "cell_names": list(cfg.cell_names),
            # Vision patch sizes that make every cell a whole number of patches per side.
            "aligned_patch_sizes": [p for p in (4, 8, 14, 16, 32) if cfg.cell_size % p == 0],
        },
        "conventions": {
            "image_paths": "relative to the folder of the file that names them",
            "box_text": "<bbox>x1, y1, x2, y2</bbox>, normalised to [0, 1] by width and height, 2 decimals",
            "grounding_bbox": "pixels [x1, y1, x2, y2], x1 <= x < x2",
            "prompt": "one '<image>\\n' per image, in order, then the question verbatim",
            "grounding_prompt": locate_question("{expression}"),
            "refusal": REFUSAL,
        },
        "question_kinds": list(QUESTION_KINDS),
        "multi_kinds": list(MULTI_KINDS),
        "caption_styles": list(CAPTION_STYLES),
        "datasets": {
            "train": {k: counts[k] for k in train},
            "eval": {k: {"dir": f"eval/{k}", **counts[k]} for k in evals},
            "corpus": {"path": "text/corpus.txt", "texts": len(corpus)},
            "held_out_text": {"texts": len(held_out_text), "words_not_in_training": unseen},
        },
        "paths": {
            "captions": counts["captions"]["shards"],
            "interleaved": counts["interleaved"]["shards"],
            "sft_single": "sft/single.json",
            "sft_single_conversations": "sft/single_conversations.json",
            "sft_multi": "sft/multi.json",
            "dpo": "dpo/pairs.jsonl",
            "safety": "safety/train.json",
            "corpus": "text/corpus.txt",
        },
        "chance": chance_levels(cfg),
        "files": out.listing(),
    }
    out.write_json("manifest.json", manifest)
    log.info("wrote the %s world (%s size, seed %d): %d files under %s", preset, size, seed, len(manifest["files"]) + 1, out.root)
    return manifest
