"""Model directories: config.json + safetensors (sharded above a size, with the Hugging Face
index file) + processor files. Written atomically: a directory is either complete or absent.
Read from a local directory or the Hugging Face cache (HF_HUB_OFFLINE is honoured)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import XGenMMConfig

WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
CONFIG = "config.json"


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """A local directory as is; otherwise a Hugging Face repo id from the local cache (or the
    hub, unless HF_HUB_OFFLINE is set)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.exists() or str(name_or_path).startswith((".", "/")) or str(name_or_path).count("/") != 1:
        raise FileNotFoundError(f"{name_or_path}: not a model directory")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        return Path(snapshot_download(str(name_or_path), local_files_only=offline))
    except LocalEntryNotFoundError as e:
        raise FileNotFoundError(f"{name_or_path}: not in the Hugging Face cache (offline mode)") from e


def _parse_size(size: str | int) -> int:
    if isinstance(size, int):
        return size
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    for u, m in units.items():
        if size.upper().endswith(u):
            return int(float(size[: -len(u)]) * m)
    return int(size)


def write_safetensors(state: dict[str, torch.Tensor], directory: Path, max_shard_size: str | int = "2GB",
                      metadata: dict | None = None) -> None:
    """Write `state` as one file, or as shards + index when larger than max_shard_size."""
    from huggingface_hub import split_torch_state_dict_into_shards

    seen: dict[int, str] = {}
    clean = {}
    for k, v in state.items():
        v = v.detach().contiguous()
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        clean[k] = v.clone() if ptr in seen else v  # safetensors refuses shared storage
        seen.setdefault(ptr, k)
    split = split_torch_state_dict_into_shards(clean, max_shard_size=_parse_size(max_shard_size),
                                               filename_pattern="model{suffix}.safetensors")
    meta = {"format": "pt", **(metadata or {})}
    for filename, keys in split.filename_to_tensors.items():
        save_file({k: clean[k] for k in keys}, str(directory / filename), metadata=meta)
    if split.is_sharded:
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in clean.values())},
                 "weight_map": split.tensor_to_filename}
        (directory / WEIGHTS_INDEX).write_text(json.dumps(index, indent=2) + "\n")


def read_json(path: Path):
    """A JSON file, or a ValueError naming it (a bare JSONDecodeError names no file)."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def _load_shard(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors' own error type names no file: a cut-off or foreign file
        raise ValueError(f"{path}: unreadable safetensors file ({type(e).__name__}: {e})") from e


def read_safetensors(directory: Path) -> dict[str, torch.Tensor]:
    if (directory / WEIGHTS_INDEX).exists():
        index = read_json(directory / WEIGHTS_INDEX)
        if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
            raise ValueError(f"{directory / WEIGHTS_INDEX}: expected an object with a 'weight_map'")
        state = {}
        for filename in sorted(set(index["weight_map"].values())):
            state.update(_load_shard(directory / filename))
        return state
    if (directory / WEIGHTS).exists():
        return _load_shard(directory / WEIGHTS)
    raise FileNotFoundError(f"{directory}: no {WEIGHTS} or {WEIGHTS_INDEX}")


class atomic_directory:
    """Context manager yielding a temporary sibling directory that replaces `target` on a
    clean exit; on an error the temporary directory is removed and `target` is untouched.
    Only a model directory (one with a config.json) or an empty one is replaced: a file, or a
    folder of other files, is refused before any work, never deleted."""

    def __init__(self, target: str | Path):
        self.target = Path(target).resolve()  # "." and ".." have no name to put a sibling beside

    def __enter__(self) -> Path:
        t = self.target
        if t.is_file():
            raise FileExistsError(f"{t} is a file; give a directory for the model")
        if t.is_dir() and not (t / CONFIG).is_file() and any(t.iterdir()):
            raise FileExistsError(f"{t} holds files that are not a model (no {CONFIG}); give a new or empty "
                                  "directory, or delete it first: writing the model there would replace them")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.tmp-", dir=self.target.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = None
        if self.target.exists():
            old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
            os.replace(self.target, old)
        os.replace(self.tmp, self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def save_pretrained(model, directory: str | Path, processor=None, max_shard_size: str | int = "2GB") -> None:
    with atomic_directory(directory) as tmp:
        model.config.save(tmp / CONFIG)
        write_safetensors(model.state_dict(), tmp, max_shard_size)
        if processor is not None:
            processor.save_pretrained(tmp)


def check_state_dict(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], source: str) -> None:
    """Missing keys, unexpected keys and wrong shapes, all named in one error."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    shapes = [f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in sorted(set(expected) & set(given)) if tuple(given[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:10]}{' ...' if len(missing) > 10 else ''} ({len(missing)})")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''} ({len(unexpected)})")
    if shapes:
        problems.append("wrong shapes: " + "; ".join(shapes[:10]))
    if problems:
        raise ValueError(f"{source}: " + "; ".join(problems))


def load_pretrained(name_or_path: str | Path, device=None, dtype=None):
    from .xgenmm import XGenMM

    directory = resolve_model_dir(name_or_path)
    if not (directory / CONFIG).exists():
        raise FileNotFoundError(f"{directory}: no {CONFIG}")
    raw = read_json(directory / CONFIG)
    if "vision_encoder_config" in raw:
        raise ValueError(f"{directory} is a released xGen-MM checkpoint; import it first: xgenmm convert import {directory} OUT_DIR")
    config = XGenMMConfig.from_dict(raw)
    model = XGenMM(config)
    state = read_safetensors(directory)
    check_state_dict(model.state_dict(), state, str(directory))
    model.load_state_dict(state, strict=True)
    if dtype is not None:
        model.to(dtype)
    if device is not None:
        model.to(device)
    return model.eval()
