"""LoRA adapters merged into plain weights: W' = W + (alpha / r) * B @ A, on a full state dict
(the form every strategy, FSDP included, can produce on one rank), giving the state dict of
a plain `XGenMM` that `from_pretrained` loads. Also used by `xgenmm train merge-lora`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

log = logging.getLogger("xgenmm.train")

PEFT_PREFIX = "lang_model.base_model.model."
WRAPPED = "_checkpoint_wrapped_module."


def merge_lora_state(state: dict[str, torch.Tensor], scaling: float, adapter: str = "default") -> dict[str, torch.Tensor]:
    """The peft-wrapped state (`lang_model.base_model.model.*`, `.base_layer.weight`,
    `.lora_A.<adapter>.weight`, `.lora_B.<adapter>.weight`) as a plain model's state."""
    out: dict[str, torch.Tensor] = {}
    lora_a: dict[str, torch.Tensor] = {}
    lora_b: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.replace(WRAPPED, "")
        if key.startswith(PEFT_PREFIX):
            key = "lang_model." + key[len(PEFT_PREFIX):]
        if f".lora_A.{adapter}." in key:
            lora_a[key.split(f".lora_A.{adapter}.")[0]] = value
            continue
        if f".lora_B.{adapter}." in key:
            lora_b[key.split(f".lora_B.{adapter}.")[0]] = value
            continue
        out[key.replace(".base_layer.", ".")] = value
    if set(lora_a) != set(lora_b):
        raise ValueError(f"LoRA state incomplete: A without B or B without A at {sorted(set(lora_a) ^ set(lora_b))[:4]}")
    for module, a in lora_a.items():
        w = out[f"{module}.weight"]
        delta = (lora_b[module].float() @ a.float()) * scaling
        out[f"{module}.weight"] = (w.float() + delta).to(w.dtype)
    return out


def merge_checkpoint(checkpoint_dir: str | Path, out_dir: str | Path) -> Path:
    """A training checkpoint (RUN_DIR/checkpoints/step-N, with LoRA adapters) or a run
    directory (its latest checkpoint) -> a plain model directory with the processor files."""
    from ..model import XGenMM, XGenMMConfig
    from ..model.checkpoint import atomic_directory, check_state_dict, read_safetensors, write_safetensors
    from .checkpoint import latest_checkpoint
    from .config import TrainConfig, config_from_dict

    path = Path(checkpoint_dir)
    if (path / "checkpoints").is_dir():
        found = latest_checkpoint(path / "checkpoints")
        if found is None:
            raise FileNotFoundError(f"{path}: no checkpoint under checkpoints/")
        path = found
    meta = json.loads((path / "trainer.json").read_text()) if (path / "trainer.json").exists() else None
    if meta is None:
        raise FileNotFoundError(f"{path}: not a training checkpoint (no trainer.json)")
    cfg: TrainConfig = config_from_dict(meta["config"], str(path), check_paths=False)
    if not cfg.lora.enabled:
        raise ValueError(f"{path}: this run has no LoRA adapters to merge")
    state = merge_lora_state(read_safetensors(path), cfg.lora.alpha / cfg.lora.r)
    model_config = XGenMMConfig.from_dict(meta["model_config"])
    check_state_dict(XGenMM(model_config).state_dict(), state, str(path))
    processor_dir = path.parent.parent / "processor"
    with atomic_directory(out_dir) as tmp:
        model_config.save(tmp / "config.json")
        write_safetensors(state, tmp)
        if processor_dir.is_dir():
            from ..model import XGenMMProcessor

            XGenMMProcessor.from_pretrained(processor_dir).save_pretrained(tmp)
    log.info("merged the LoRA adapters of %s into %s", path, out_dir)
    return Path(out_dir)
