"""The data of DPO's second round (reference section 8): for each prompt, the model's own
answer on a noised copy of its image(s) becomes the rejected answer; the chosen answer stays.
Answers that ignore the image look like the model's own fluent text, which is exactly what
the second round teaches it to prefer less.

Noising is diffusion-style, on the normalised crops the model sees ([-1, 1], the DDPM data
space): x_t = sqrt(abar_t) * x + sqrt(1 - abar_t) * eps, abar_t the product of (1 - beta) of
a linear beta schedule (1e-4 .. 0.02 over 1000 steps). t = 0 leaves the image as is; t = 1000
leaves almost pure noise."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger("xgenmm.train")


@dataclass
class NoisePairsConfig:
    model: str  # model directory whose answers become the rejected ones (the first DPO round's output)
    source: str  # preference pairs (.json/.jsonl/.parquet or shards) whose prompts and chosen answers are kept
    out: str  # output JSONL of new pairs (images referenced by absolute path, or written beside it)
    noise_step: int = 500  # diffusion step t in [0, 1000]: how much of the image is replaced by noise
    max_new_tokens: int = 64  # longest generated answer
    batch_size: int = 8  # prompts generated together
    seed: int = 0  # noise draws (per sample: seed + its index)
    limit: int | None = None  # at most this many pairs (None: all)
    keep_identical: bool = False  # keep pairs whose noised answer equals the chosen one (no signal; dropped by default)


def alpha_bar(t: int, steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> float:
    if not 0 <= t <= steps:
        raise ValueError(f"noise_step must be in [0, {steps}], got {t}")
    betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    return float(torch.prod(1 - betas[:t]))


def noise_pixels(pixels: torch.Tensor, t: int, generator: torch.Generator) -> torch.Tensor:
    """Forward-diffuse normalised crops [n, 3, S, S] to step t."""
    a = alpha_bar(t)
    eps = torch.randn(pixels.shape, generator=generator, dtype=torch.float32)
    return (a**0.5) * pixels + ((1 - a) ** 0.5) * eps.to(pixels.dtype)


def image_field(refs, sample_id: str, image_dir: Path) -> list[str]:
    """A pair's `image` field for a JSON-lines output: local images by absolute path, others
    (bytes, URLs) written under `image_dir`."""
    paths = []
    for k, ref in enumerate(refs):
        if ref.path and "://" not in ref.path:
            paths.append(str(Path(ref.path).resolve()))
        else:
            image = ref.load(sample_id)
            image_dir.mkdir(parents=True, exist_ok=True)
            dest = image_dir / f"{sample_id.replace('/', '_').replace(':', '_')}-{k}.png"
            image.save(dest)
            paths.append(str(dest.resolve()))
    return paths


def build_noised_pairs(cfg: NoisePairsConfig) -> dict:
    """Write cfg.out; returns counts {read, written, identical, empty (no answer generated),
    skipped (bad samples)}."""
    from ..data.errors import SampleError, SkipStats
    from ..data.parse import parse_record
    from ..data.samples import PreferenceSample
    from ..data.sources import SourceConfig, open_source
    from ..model import XGenMM, XGenMMProcessor

    model = XGenMM.from_pretrained(cfg.model).eval()
    proc = XGenMMProcessor.from_pretrained(cfg.model)
    source = open_source(SourceConfig(path=cfg.source, shuffle=False))
    stats = SkipStats()
    out_path = Path(cfg.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    counts = {"read": 0, "written": 0, "identical": 0, "empty": 0, "skipped": 0}
    pending: list[tuple[int, PreferenceSample, list]] = []

    def flush(fh) -> None:
        if not pending:
            return
        texts = [proc.apply_chat_template([{"role": t.role, "content": t.text} for t in s.prompt]) for _, s, _ in pending]
        enc = proc(texts, images=[ims for _, _, ims in pending], padding_side="left")
        noised, k = [], 0
        for index, _, ims in pending:
            g = torch.Generator().manual_seed(cfg.seed + index)
            for _ in ims:
                noised.append(noise_pixels(enc["pixel_values"][k], cfg.noise_step, g))
                k += 1
        eos = model.config.tokens.eos_token_ids
        new = model.generate(enc["input_ids"], enc["attention_mask"], noised, enc["image_sizes"],
                             max_new_tokens=cfg.max_new_tokens, eos_token_id=eos)
        answers = proc.batch_decode(new, skip_special_tokens=True)
        for (_, s, _), answer in zip(pending, answers):
            if not answer.strip():
                counts["empty"] += 1
                continue
            if answer.strip() == s.chosen.strip() and not cfg.keep_identical:
                counts["identical"] += 1
                continue
            rec = {"id": f"{s.id}:noised", "image": image_field(s.images, s.id, out_path.parent / "images"),
                   "prompt": [{"role": t.role, "content": t.text} for t in s.prompt],
                   "chosen": s.chosen, "rejected": answer, "noise_step": cfg.noise_step}
            fh.write(json.dumps(rec) + "\n")
            counts["written"] += 1
        pending.clear()

    from tqdm import tqdm

    with open(tmp, "w") as fh, torch.no_grad():
        for index, item in enumerate(tqdm(source.iterate(cfg.seed), desc="noised pairs", unit="pair")):
            if cfg.limit is not None and index >= cfg.limit:
                break
            counts["read"] += 1
            try:
                sample = parse_record(item.record(), item.id, item.resolve, kind="preference")
                if not isinstance(sample, PreferenceSample):
                    raise SampleError("bad_record", item.id, "not a preference pair")
                images = [ref.load(sample.id) for ref in sample.images]
            except SampleError as e:
                stats.skip(e)
                counts["skipped"] += 1
                continue
            pending.append((index, sample, images))
            if len(pending) >= cfg.batch_size:
                flush(fh)
        flush(fh)
    os.replace(tmp, out_path)
    log.info("noised pairs: %s -> %s", counts, out_path)
    return counts
