"""Which parameters learn in a stage, said explicitly: the four parts' switches, LoRA adapters
(peft) on named LLM linears, a manifest of trainable counts per module, and the check after
the first optimiser step that frozen weights stayed put and trainable ones moved."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

from ..model import XGenMM
from .config import LoraSection, TrainableSection

log = logging.getLogger("xgenmm.train")

PARTS = ("vision_encoder", "vision_tokenizer", "lang_model")


def apply_trainable(model: XGenMM, trainable: TrainableSection, lora: LoraSection, seed: int = 0) -> XGenMM:
    """Set requires_grad per part, then wrap the LLM with LoRA adapters when enabled (peft
    freezes the LLM's own weights; the adapters are the only trainable LLM tensors)."""
    for part in PARTS:
        getattr(model, part).requires_grad_(bool(getattr(trainable, part)))
    # The vision encoder runs under no_grad while its config says frozen.
    model.vision_encoder.cfg.frozen = not trainable.vision_encoder
    if lora.enabled:
        from peft import LoraConfig, get_peft_model

        names = {n.rsplit(".", 1)[-1] for n, m in model.lang_model.named_modules() if isinstance(m, nn.Linear)}
        unknown = sorted(set(lora.target_modules) - names)
        if unknown:
            raise ValueError(f"lora.target_modules: {unknown} are not linear layers of the LLM; it has {sorted(names)}")
        torch.manual_seed(seed)  # adapter A matrices are random: the same run, the same adapters
        config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                            target_modules=list(lora.target_modules), bias="none")
        model.lang_model = get_peft_model(model.lang_model, config)
    return model


def has_lora(model: nn.Module) -> bool:
    return any("lora_" in n for n, _ in model.named_parameters())


def _module_key(name: str) -> str:
    """The manifest row of a parameter: its part and the next meaningful level."""
    parts = [p for p in name.split(".") if p not in ("base_model", "model", "tower", "_checkpoint_wrapped_module")]
    head = parts[0]
    if head == "lang_model":
        if "lora_A" in name or "lora_B" in name:
            return "lang_model.lora"
        if "layers" in parts:
            return "lang_model.layers"
        return f"lang_model.{parts[1]}" if len(parts) > 2 else head
    if head == "vision_tokenizer":
        return f"vision_tokenizer.{parts[1]}" if len(parts) > 2 else "vision_tokenizer.latents"
    return head


def manifest(model: nn.Module) -> dict:
    """{module: {trainable, frozen}} plus totals and the trainable share."""
    rows: dict[str, dict] = defaultdict(lambda: {"trainable": 0, "frozen": 0})
    for name, p in model.named_parameters():
        rows[_module_key(name)]["trainable" if p.requires_grad else "frozen"] += p.numel()
    total_t = sum(r["trainable"] for r in rows.values())
    total = total_t + sum(r["frozen"] for r in rows.values())
    lm = [r for k, r in rows.items() if k.startswith("lang_model")]
    lm_base = sum(r["trainable"] + r["frozen"] for k, r in rows.items() if k.startswith("lang_model") and k != "lang_model.lora")
    return {"modules": dict(sorted(rows.items())), "trainable": total_t, "total": total,
            "trainable_share": total_t / max(total, 1),
            "lora_share_of_lm": rows["lang_model.lora"]["trainable"] / max(lm_base, 1) if lm else 0.0}


def format_manifest(m: dict) -> str:
    lines = [f"{'module':<34}{'trainable':>14}{'frozen':>14}"]
    for k, r in m["modules"].items():
        lines.append(f"{k:<34}{r['trainable']:>14,}{r['frozen']:>14,}")
    lines.append(f"{'total':<34}{m['trainable']:>14,}{m['total'] - m['trainable']:>14,}"
                 f"   ({100 * m['trainable_share']:.2f}% trainable)")
    if m["lora_share_of_lm"]:
        lines.append(f"LoRA adapters: {100 * m['lora_share_of_lm']:.2f}% of the LLM's weights")
    return "\n".join(lines)


def save_manifest(m: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(m, indent=2) + "\n")
    tmp.replace(path)


# ---- did the first step do what the config says? ----------------------------------------

def _local(p: torch.Tensor) -> torch.Tensor:
    return p.to_local() if hasattr(p, "to_local") else p  # FSDP2 DTensor: this rank's shard


def fingerprint(model: nn.Module) -> dict[str, tuple[float, float]]:
    """Two float64 sums per parameter: cheap to keep (no copy of the weights) and changed by
    any real update."""
    out = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            t = _local(p).detach().double()
            out[name] = (float(t.sum()), float((t * t).sum()))
    return out


def nonzero_grads(model: nn.Module) -> set[str]:
    """Parameters whose gradient has a nonzero entry (LoRA's A gets an all-zero gradient in
    the first step, since B starts at zero)."""
    with torch.no_grad():
        return {n for n, p in model.named_parameters() if p.grad is not None and bool(_local(p.grad).ne(0).any())}


def verify_first_step(model: nn.Module, before: dict, had_grad: set[str], reduce_any=None) -> list[str]:
    """Compare to `before`. Raises if a frozen weight moved or a trainable weight that got a
    nonzero gradient did not; returns warnings for trainable weights without one (e.g. the
    resampler on a text-only batch, LoRA's A matrices in step one). `reduce_any(list[bool]) -> list[bool]` ORs over ranks."""
    after = fingerprint(model)
    names = list(before)
    moved = [before[n] != after[n] for n in names]
    got = [n in had_grad for n in names]
    if reduce_any is not None:
        moved, got = reduce_any(moved), reduce_any(got)
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    frozen_moved = [n for n, mv in zip(names, moved) if mv and not trainable[n]]
    stuck = [n for n, mv, g in zip(names, moved, got) if trainable[n] and g and not mv]
    # LoRA's A matrices get an all-zero gradient in step one (B starts at zero): expected.
    no_grad = [n for n, mv, g in zip(names, moved, got) if trainable[n] and not g and not mv and "lora_A" not in n]
    problems = []
    if frozen_moved:
        problems.append(f"frozen weights moved in the first step: {frozen_moved[:8]}{' ...' if len(frozen_moved) > 8 else ''}")
    if stuck:
        problems.append(f"trainable weights did not move although they had gradients: {stuck[:8]}")
    if problems:
        raise RuntimeError("first-step check failed: " + "; ".join(problems))
    warnings = []
    if no_grad:
        warnings.append(f"{len(no_grad)} trainable tensors got no (or an all-zero) gradient in the first step "
                        f"(e.g. {no_grad[0]}); fine if that batch had nothing for them (e.g. no images)")
    return warnings
