"""AdamW with weight-decay groups, and the learning-rate schedule (linear warmup, then cosine
or constant)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import OptimSection, ScheduleSection


def param_kind(name: str, param: nn.Parameter, module: nn.Module) -> str:
    """norm, bias, latents, embedding, lora or weight: what the no-decay list refers to."""
    if "lora_A" in name or "lora_B" in name:
        return "lora"
    if name.endswith("latents"):
        return "latents"
    if name.endswith("bias"):
        return "bias"
    if isinstance(module, nn.Embedding) or name.endswith("media_pos"):
        return "embedding"
    if "norm" in type(module).__name__.lower() or "norm" in name.rsplit(".", 2)[-2].lower():
        return "norm"
    return "weight"


def param_groups(model: nn.Module, cfg: OptimSection) -> list[dict]:
    """Two AdamW groups: weight decay on plain weights, none on the configured kinds. Only
    trainable parameters; named so that a checkpoint records which went where."""
    owner = {}
    for mod_name, module in model.named_modules():
        for p_name, _ in module.named_parameters(recurse=False):
            owner[f"{mod_name}.{p_name}" if mod_name else p_name] = module
    decay, no_decay, decay_names, no_decay_names = [], [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if param_kind(name, p, owner[name]) in cfg.no_decay:
            no_decay.append(p)
            no_decay_names.append(name)
        else:
            decay.append(p)
            decay_names.append(name)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": cfg.weight_decay, "names": decay_names})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "names": no_decay_names})
    return groups


def build_optimizer(model: nn.Module, cfg: OptimSection) -> torch.optim.AdamW:
    groups = param_groups(model, cfg)
    if not groups:
        raise ValueError("no trainable parameters")
    # foreach=False: the same arithmetic order whatever the grouping, for repeatable CPU runs.
    fused = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                             fused=True if fused else None, foreach=None if fused else False)


def lr_factor(step: int, cfg: ScheduleSection) -> float:
    """Multiplier of the peak lr for optimiser step `step` (0-based): the first step already
    moves (warmup starts at 1/warmup, not 0), the cosine reaches min_lr_ratio at max_steps."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.kind == "constant":
        return 1.0
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleSection) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg))
