"""On-policy selection of DPO pairs. Most preference pairs of a set are ones the model to be
tuned already ranks right by a wide margin; a short DPO stage over all of them spends most
of its steps there, and pushes the model wherever the set as a whole leans. `mine_pairs`
scores every pair with the model (the summed log-probability of the chosen answer minus that
of the rejected one, each after the pair's prompt and image(s), as the DPO loss computes them:
`losses.sequence_logps`) and keeps the pairs whose margin is below `max_margin` nats: the
ones it ranks wrong, and those it ranks right only narrowly. The stage then trains on what
this model gets wrong (hallucinated objects for a model that says "yes" too often, missed
ones for a model that says "no"), as the release's second round trains on the model's own
answers (`noise_pairs.py`).

The output is JSON lines that the preference loaders read: id, image (absolute paths, or
images written beside the output), prompt (the turns), chosen, rejected, and the pair's
margin under the scoring model."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger("xgenmm.train")


@dataclass
class MinePairsConfig:
    model: str  # model directory that scores the pairs (the model the DPO stage will tune)
    source: str  # preference pairs (.json/.jsonl/.parquet or shards)
    out: str  # output JSONL of the kept pairs
    max_margin: float = 1.0  # keep pairs whose chosen-minus-rejected log-probability (nats) is below this
    batch_size: int = 16  # pairs scored together
    max_length: int = 2048  # tokens per answer row, image tokens included (give the DPO stage's data.encode.max_length)
    device: str | None = None  # where the model scores (None: cuda when available, else cpu)


class NoPairsKept(ValueError):
    """Every pair scored is ranked right by at least the margin: DPO would have nothing to train on."""


# The fields of a pair that the output writes itself; any other scalar field of a source record
# (a pair's kind, its origin) is carried over as it is.
_OWN_FIELDS = {"id", "image", "images", "prompt", "chosen", "rejected", "margin", "conversations", "messages"}


def pair_margins(model, pairs: list, pad_token_id: int) -> list[float]:
    """Chosen-minus-rejected summed log-probability (nats) of each encoded pair (the Encoder's
    output for a PreferenceSample) under `model`, as the DPO loss computes them; call it
    under torch.no_grad() with the model in eval mode."""
    from ..data.collate import pair_batch
    from .losses import sequence_logps

    device = next(model.parameters()).device
    batch = pair_batch(pairs, pad_token_id)
    batch = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    batch["pixel_values"] = [p.to(device) for p in batch["pixel_values"]]
    logps, _ = sequence_logps(model, batch)
    return (logps[0::2] - logps[1::2]).float().tolist()


def encode_pair(item, encoder, stats):
    """(sample, raw record, encoded pair) of a source item, or None for a bad one (counted in
    `stats` by reason)."""
    from ..data.errors import SampleError
    from ..data.parse import parse_record
    from ..data.samples import PreferenceSample

    try:
        raw = item.record()
        sample = parse_record(raw, item.id, item.resolve, stats=stats, kind="preference")
        if not isinstance(sample, PreferenceSample):
            raise SampleError("bad_record", item.id, "not a preference pair")
        return sample, raw, encoder.encode(sample)
    except SampleError as e:
        stats.skip(e)
        return None


def _record(sample, raw, margin: float, image_dir: Path) -> dict:
    from .noise_pairs import image_field

    extra = {k: v for k, v in raw.items() if k not in _OWN_FIELDS and isinstance(v, (str, int, float, bool))} \
        if isinstance(raw, dict) else {}
    return {"id": sample.id, **extra, "image": image_field(sample.images, sample.id, image_dir),
            "prompt": [{"role": t.role, "content": t.text} for t in sample.prompt],
            "chosen": sample.chosen, "rejected": sample.rejected, "margin": round(margin, 4)}


def mine_pairs(cfg: MinePairsConfig, model=None, processor=None, progress: bool = True) -> dict:
    """Write cfg.out with the pairs whose margin is below cfg.max_margin, in the source's
    order; returns counts {read, scored, kept, skipped, ranked_right} (ranked_right: pairs
    whose chosen answer the model already prefers). `model` / `processor` default to
    loading cfg.model. Raises ValueError when no pair can be read, and NoPairsKept (a
    ValueError) when none is below the margin."""
    from tqdm import tqdm

    from ..data.encode import EncodeConfig, Encoder
    from ..data.errors import SkipStats
    from ..data.sources import SourceConfig, open_source
    from ..model import XGenMM, XGenMMProcessor

    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {cfg.batch_size}")
    if model is None:
        model = XGenMM.from_pretrained(cfg.model, device=cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if processor is None:
        processor = XGenMMProcessor.from_pretrained(cfg.model)
    was_training = model.training
    model.eval()
    source = open_source(SourceConfig(path=cfg.source, shuffle=False))
    stats = SkipStats()
    encoder = Encoder(processor, EncodeConfig(max_length=cfg.max_length), stats)
    out_path = Path(cfg.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    counts = {"read": 0, "scored": 0, "kept": 0, "skipped": 0, "ranked_right": 0}
    kept: list[dict] = []
    pending: list = []

    def flush() -> None:
        if not pending:
            return
        for (sample, raw, _), margin in zip(pending, pair_margins(model, [pair for _, _, pair in pending],
                                                                  processor.pad_token_id)):
            counts["scored"] += 1
            counts["ranked_right"] += margin > 0
            if margin < cfg.max_margin:
                kept.append(_record(sample, raw, margin, out_path.parent / "images"))
        pending.clear()

    try:
        with torch.no_grad():
            for item in tqdm(source.iterate(0), desc="scoring pairs", unit="pair", disable=not progress):
                counts["read"] += 1
                got = encode_pair(item, encoder, stats)
                if got is None:
                    counts["skipped"] += 1
                    continue
                pending.append(got)
                if len(pending) >= cfg.batch_size:
                    flush()
            flush()
    finally:
        model.train(was_training)
    if not counts["scored"]:
        raise ValueError(f"{cfg.source}: no preference pair could be read ({counts['read']} records; skipped by "
                         f"reason: {dict(stats.skipped)})")
    if not kept:
        raise NoPairsKept(f"{cfg.source}: none of {counts['scored']} pairs has a margin below {cfg.max_margin} nats "
                          f"under {cfg.model}: nothing for DPO to train on (raise max_margin)")
    counts["kept"] = len(kept)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
    os.replace(tmp, out_path)
    if counts["skipped"]:
        log.warning("mined pairs: %d bad pair(s) skipped, by reason: %s", counts["skipped"], dict(stats.skipped))
    log.info("mined pairs: %s -> %s", counts, out_path)
    return counts
