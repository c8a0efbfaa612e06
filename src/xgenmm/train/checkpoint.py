"""Resumable training checkpoints in RUN_DIR/checkpoints/step-NNNNNNNN/:

    model.safetensors   every weight (LoRA adapters included), full/unsharded
    optimizer.pt        AdamW state (full), written by rank 0
    trainer.json        step, scheduler, strategy, world size, counters
    rank-R.pt           per rank: RNG states (python, numpy, torch, cuda) and the data-loader position

Atomic: every rank writes into `.step-N.tmp`, then rank 0 renames it to `step-N` (a rename is
atomic on POSIX). A process killed while writing leaves a `.tmp` folder that is ignored and
removed by the next run, and the previous checkpoint stays loadable."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from ..model.checkpoint import read_safetensors, write_safetensors
from . import parallel
from .parallel import Dist

log = logging.getLogger("xgenmm.train")

STEP_DIR = re.compile(r"^step-(\d+)$")
TRAINER_FILE = "trainer.json"


def step_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:08d}"


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = STEP_DIR.match(p.name)
        if m and p.is_dir() and (p / TRAINER_FILE).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def remove_stale(root: Path) -> None:
    """Partial checkpoints of a killed run. A `.step-N.old` is a complete checkpoint that `save`
    moved aside to write step N again: if the run died before the new one took its place, it
    is put back, not removed."""
    if root.is_dir():
        for p in sorted(root.iterdir()):
            if not (p.name.startswith(".step-") and p.is_dir()):
                continue
            m = re.match(r"^\.(step-\d+)\.old$", p.name)
            if m and not (root / m.group(1) / TRAINER_FILE).is_file() and (p / TRAINER_FILE).is_file():
                log.warning("restoring checkpoint %s, moved aside by a run interrupted while writing it again", m.group(1))
                shutil.rmtree(root / m.group(1), ignore_errors=True)
                os.replace(p, root / m.group(1))
                continue
            log.warning("removing a partial checkpoint left by an interrupted run: %s", p)
            shutil.rmtree(p, ignore_errors=True)


def rng_state() -> dict:
    st = {
        "python": random.getstate(),
        "numpy": list(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    st["numpy"][1] = torch.from_numpy(st["numpy"][1].astype(np.int64))
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    py = st["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, gauss = st["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(gauss)))
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def save(root: Path, step: int, d: Dist, model, optimizer, scheduler, loader, trainer: dict, keep_last: int,
         extra=None) -> Path:
    """Write checkpoint `step` atomically (collective: every rank calls it); `extra(dir)`, when
    given, writes more files into it on rank 0 (the DPO selection's best weights)."""
    final = step_dir(root, step)
    tmp = root / f".{final.name}.tmp"
    if d.is_main:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    parallel.barrier(d)
    model_state = parallel.full_model_state(model, d)
    optim_state = parallel.full_optimizer_state(model, optimizer, d)
    torch.save({"rng": rng_state(), "loader": loader.state_dict()}, tmp / f"rank-{d.rank}.pt")
    if d.is_main:
        write_safetensors(model_state, tmp)
        torch.save(optim_state, tmp / "optimizer.pt")
        info = {**trainer, "step": step, "scheduler": scheduler.state_dict(), "world_size": d.world_size,
                "strategy": d.strategy}
        (tmp / TRAINER_FILE).write_text(json.dumps(info, indent=2) + "\n")
        if extra is not None:
            extra(tmp)
    parallel.barrier(d)
    if d.is_main:
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        old = None
        if final.exists():
            old = root / f".{final.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        for _, p in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(p, ignore_errors=True)
    parallel.barrier(d)
    return final


def load(path: Path, d: Dist, model, optimizer, scheduler, loader) -> dict:
    """Restore everything `save` wrote; returns the trainer dict (with `step`)."""
    info = json.loads((path / TRAINER_FILE).read_text())
    if info["world_size"] != d.world_size or info["strategy"] != d.strategy:
        raise ValueError(f"{path}: saved with {info['world_size']} process(es) and strategy {info['strategy']}; "
                         f"resume with the same (now {d.world_size}, {d.strategy})")
    parallel.load_full_model_state(model, read_safetensors(path), d)
    optim_state = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    parallel.load_full_optimizer_state(model, optimizer, optim_state, d)
    scheduler.load_state_dict(info["scheduler"])
    per_rank = torch.load(path / f"rank-{d.rank}.pt", map_location="cpu", weights_only=True)
    loader.load_state_dict(per_rank["loader"])
    set_rng_state(per_rank["rng"])
    return info
