"""AdamW with weight-decay groups, and the learning-rate schedule (linear warmup, then cosine
or constant)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import OptimSection, ScheduleSection, lr_scale_problems


def param_kind(name: str, param: nn.Parameter, module: nn.Module) -> str:
    """norm, bias, latents, embedding, lora or weight: what the no-decay list refers to."""
    if "lora_A" in name or "lora_B" in name:
        return "lora"
    if name.endswith("latents"):
        return "latents"
    if name.endswith("bias"):
        return "bias"
    if isinstance(module, nn.Embedding) or name.endswith(("media_pos", "group_pos", "image_pos")):
        return "embedding"
    if "norm" in type(module).__name__.lower() or "norm" in name.rsplit(".", 2)[-2].lower():
        return "norm"
    return "weight"


_WRAPPERS = ("module.", "_orig_mod.")  # DDP and torch.compile name prefixes


def _within(name: str, prefix: str) -> bool:
    """Whether parameter `name` (DDP / compile prefixes aside) lies in module `prefix`, matching
    whole dotted components: `vision_tokenizer` holds `vision_tokenizer.norm.weight`, not
    `vision_tokenizer2.x`."""
    while name.startswith(_WRAPPERS):
        name = name.split(".", 1)[1]
    return name == prefix or name.startswith(prefix + ".")


def lr_scale_of(name: str, lr_scale: dict) -> float:
    """The multiplier of the longest `lr_scale` prefix that holds `name`; 1.0 when none does."""
    matches = [prefix for prefix in lr_scale if _within(name, prefix)]
    return float(lr_scale[max(matches, key=len)]) if matches else 1.0


def param_groups(model: nn.Module, cfg: OptimSection) -> list[dict]:
    """AdamW groups: weight decay on plain weights, none on the configured kinds, each split
    by learning-rate multiplier (`cfg.lr_scale`, module prefix -> factor; LLaVA's separate
    projector lr). Only trainable parameters; named so that a checkpoint records which went
    where. A prefix that names no parameter of the model is an error. Groups at the base lr
    come first (the logged lr is the first group's)."""
    problems = lr_scale_problems(cfg.lr_scale)
    if problems:
        raise ValueError("; ".join(problems))
    owner = {}
    for mod_name, module in model.named_modules():
        for p_name, _ in module.named_parameters(recurse=False):
            owner[f"{mod_name}.{p_name}" if mod_name else p_name] = module
    buckets: dict[tuple[float, bool], tuple[list, list]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = lr_scale_of(name, cfg.lr_scale)
        decays = param_kind(name, p, owner[name]) not in cfg.no_decay
        params, names = buckets.setdefault((scale, decays), ([], []))
        params.append(p)
        names.append(name)
    # A prefix that names no parameter at all is a typo; one that names only frozen ones is not.
    every = [n for n, _ in model.named_parameters()]
    unknown = [k for k in cfg.lr_scale if not any(_within(n, k) for n in every)]
    if unknown:
        raise ValueError(f"optim.lr_scale: {unknown} name no parameter of the model "
                         f"(top-level modules: {sorted({n.split('.', 1)[0] for n in every})})")
    groups = []
    for (scale, decays), (params, names) in sorted(buckets.items(), key=lambda kv: (kv[0][0] != 1.0, not kv[0][1])):
        group = {"params": params, "weight_decay": cfg.weight_decay if decays else 0.0, "names": names}
        if scale != 1.0:
            group["lr"] = cfg.lr * scale
        groups.append(group)
    return groups


def build_optimizer(model: nn.Module, cfg: OptimSection) -> torch.optim.AdamW:
    groups = param_groups(model, cfg)
    if not groups:
        raise ValueError("no trainable parameters")
    # The fused kernel (CPU or CUDA) updates every element on its own, so the arithmetic is the
    # same whatever the grouping (repeatable runs); on CPU it is ~3x faster than the per-tensor
    # loop. Sharded (DTensor) parameters, or other devices, take the per-tensor loop.
    params = [p for g in groups for p in g["params"]]
    fused = all(type(p.data) is torch.Tensor and p.device.type in ("cpu", "cuda") and p.is_floating_point()
                for p in params)
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
