"""One trainer for every stage of the recipe, read top to bottom:

    setup -> model (+ trainable parts, LoRA) -> distribution -> optimiser, schedule, data
    -> resume -> for each step: micro-batches -> loss -> backward -> clip -> AdamW -> log,
    checkpoint -> final model directory.

`run_stage(cfg)` is the Python entry point (`xgenmm train` calls it)."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import checkpoint as ckpt
from . import parallel
from .build import build_data, build_model
from .config import TrainConfig
from .losses import dpo_loss, lm_loss, units
from .metrics import MetricsLogger, batch_stats, peak_flops, peak_memory_gb, plot_curves
from .optim import build_optimizer, build_scheduler, lr_factor
from .trainable import apply_trainable, fingerprint, nonzero_grads, format_manifest, manifest, save_manifest, verify_first_step

log = logging.getLogger("xgenmm.train")


@dataclass
class Hooks:
    """Optional callbacks (the demo's evaluations, tests). Called on every rank."""

    on_batch: Callable[[int, dict], None] | None = None  # (step, micro-batch) before its forward
    on_step_end: Callable[[int, dict], None] | None = None  # (step, metrics) after each optimiser step
    on_checkpoint: Callable[[int, Path], None] | None = None  # (step, checkpoint dir) after it is complete


class TrainingDiverged(RuntimeError):
    """A non-finite loss or gradient with nan_policy=stop (a checkpoint was saved first)."""


def run_stage(cfg: TrainConfig, hooks: Hooks | None = None) -> Path:
    """Train one stage; returns RUN_DIR/final (a `from_pretrained` directory), or the latest
    checkpoint for a LoRA run with lora.merge_at_end false. Under torchrun every process
    calls this."""
    d = parallel.setup(cfg.runtime)
    try:
        return _train(cfg, d, hooks or Hooks())
    finally:
        parallel.teardown(d)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _to_device(batch: dict, device: torch.device, move_pixels: bool = True) -> dict:
    """The batch on `device`. With the image-token cache on, the pixel tensors stay the
    loader's own (the cache's keys); the model moves what it must encode."""
    if device.type == "cpu":
        return batch
    out = {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    if move_pixels:
        out["pixel_values"] = [p.to(device, non_blocking=True) for p in batch["pixel_values"]]
    return out


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _train(cfg: TrainConfig, d: parallel.Dist, hooks: Hooks) -> Path:
    run_dir = Path(cfg.run_dir)
    ckpt_root = run_dir / "checkpoints"
    if cfg.runtime.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)

    # ---- model, trainable parts, manifest ------------------------------------------------
    model, processor = build_model(cfg)
    apply_trainable(model, cfg.trainable, cfg.lora, cfg.seed)
    if cfg.runtime.image_token_cache:
        model.cache_image_tokens(True)  # the config froze both vision parts (validated)
    man = manifest(model)
    if d.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        print(format_manifest(man), flush=True)
        save_manifest(man, run_dir / "trainable.json")
        _write_text(run_dir / "config.yaml", cfg.to_yaml())
        processor.save_pretrained(run_dir / "processor")
    if cfg.runtime.activation_checkpointing:
        parallel.apply_activation_checkpointing(model)
    model.to(d.device)

    # ---- distribution, optimiser, schedule, data ------------------------------------------
    amp = parallel.autocast_dtype(cfg.runtime, d.device)
    wrapped = parallel.wrap(model, d, cfg.runtime, amp)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule)
    loader = build_data(cfg, processor, d.rank, d.world_size)
    selector = None
    if cfg.stage == "dpo" and cfg.dpo.select_source:
        from .select import StepSelector

        selector = StepSelector(cfg.dpo.select_source, processor, cfg.data.encode.max_length, cfg.data.batch.batch_size)

    # ---- resume ---------------------------------------------------------------------------
    step, trainer = 0, {"skipped_steps": 0, "tokens": 0, "samples": 0}
    if d.is_main:
        ckpt.remove_stale(ckpt_root)
    parallel.barrier(d)
    if cfg.checkpoint.resume == "never" and ckpt.list_checkpoints(ckpt_root):
        # They would be pruned by step number with this run's and taken for its own.
        raise FileExistsError(
            f"{ckpt_root} holds checkpoints of an earlier run (steps "
            f"{', '.join(str(n) for n, _ in ckpt.list_checkpoints(ckpt_root))}) and checkpoint.resume is never: give "
            f"another run_dir, delete them, or resume from them (checkpoint.resume: auto)")
    latest = ckpt.latest_checkpoint(ckpt_root) if cfg.checkpoint.resume != "never" else None
    if cfg.checkpoint.resume == "must" and latest is None:
        raise FileNotFoundError(f"{ckpt_root}: no checkpoint to resume from")
    if latest is not None:
        info = ckpt.load(latest, d, wrapped, optimizer, scheduler, loader)
        step = int(info["step"])
        # The learning rate follows this config's schedule (max_steps may have been raised).
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs):
            group["lr"] = base * lr_factor(step, cfg.schedule)
        trainer.update({k: info[k] for k in trainer if k in info})
        if d.is_main:
            log.info("resumed from %s (step %d)", latest, step)
        if selector is not None and "selection" in info:
            selector.load_from(info["selection"], latest)
    else:
        _seed_all(cfg.seed * 1000 + d.rank)  # dropout and any other draw, per rank
    if selector is not None and not selector.history:
        selector.consider(step, model)  # the model the stage starts from is a candidate too

    # ---- the loop ---------------------------------------------------------------------------
    tok = model.config.tokens
    peak = peak_flops(d.device, cfg.logging.peak_tflops) * d.world_size
    count_flops = model.flops_counter()
    logger = MetricsLogger(run_dir, cfg.logging.tensorboard, resume_step=step) if d.is_main else None
    bar = None
    if d.is_main and cfg.logging.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.schedule.max_steps, initial=step, desc=f"{cfg.stage}", unit="step", dynamic_ncols=True)
    reference = None
    if cfg.stage == "dpo":
        def reference():  # the policy with its LoRA adapters switched off: no second model
            return model.lang_model.disable_adapter()
    data_iter = iter(loader)
    epoch_had_batches = loader.taken > 0
    first_step_check = True
    last_saved = step if latest is not None else -1

    def next_batch() -> dict | None:
        nonlocal data_iter, epoch_had_batches
        while True:
            try:
                # A DataLoader draws a seed from the global RNG when it starts an epoch; keep
                # that draw out of the training RNG so that a resumed run's dropout is exact.
                with torch.random.fork_rng(devices=[]):
                    b = next(data_iter)
                epoch_had_batches = True
                return b
            except StopIteration:
                if not epoch_had_batches:
                    raise ValueError(f"data.source {cfg.data.source}: an epoch gave no batch (rank {d.rank}); "
                                     f"skip counters: {loader.last_epoch_stats.summary() if loader.last_epoch_stats else '-'}")
                if cfg.schedule.epochs is not None and loader.epoch >= cfg.schedule.epochs:
                    return None
                data_iter, epoch_had_batches = iter(loader), False

    def save_checkpoint() -> Path:
        trainer_info = {**trainer, "config": cfg.to_dict(), "model_config": model.config.to_dict()}
        if selector is not None:
            trainer_info["selection"] = selector.state()
        path = ckpt.save(ckpt_root, step, d, wrapped, optimizer, scheduler, loader, trainer_info, cfg.checkpoint.keep_last,
                         extra=selector.save_into if selector is not None else None)
        if hooks.on_checkpoint:
            hooks.on_checkpoint(step, path)
        return path

    def select(at: int, metrics: dict) -> None:
        """The DPO step selection's evaluation, when step `at` is one of its steps."""
        if selector is not None and (at % cfg.dpo.select_every == 0 or at == cfg.schedule.max_steps):
            entry = selector.consider(at, model)
            metrics.update({"select_accuracy": entry["accuracy"], "select_margin": entry["margin"]})

    def end_step(at: int, metrics: dict) -> bool:
        """Step `at`'s hook and, when one is due, its checkpoint; whether one was written."""
        if hooks.on_step_end:
            hooks.on_step_end(at, metrics)
        if cfg.checkpoint.every_steps and at % cfg.checkpoint.every_steps == 0:
            save_checkpoint()
            return True
        return False

    while step < cfg.schedule.max_steps:
        t_start = time.perf_counter()
        batches, wait = [], 0.0
        for _ in range(cfg.optim.grad_accum):
            t = time.perf_counter()
            b = next_batch()
            wait += time.perf_counter() - t
            if b is None:
                break
            batches.append(b)
        local_units = sum(units(b, cfg.stage, cfg.optim.loss_weighting) for b in batches)
        total_units, short = parallel.all_sum([float(local_units), float(len(batches) < cfg.optim.grad_accum)], d)
        if short:
            if d.is_main:
                log.info("the data ended after %d epoch(s) at step %d", loader.epoch, step)
            break
        # Sums over the whole step divided once: the same gradient however the global batch
        # is split over micro-batches and ranks (DDP / FSDP average over ranks: x world).
        scale = d.world_size / max(total_units, 1.0)
        loss_sum, extra, tokens, positions, flops, samples = 0.0, {}, 0, 0, 0.0, 0
        for i, b in enumerate(batches):
            if hooks.on_batch:
                hooks.on_batch(step, b)
            b = _to_device(b, d.device, move_pixels=not cfg.runtime.image_token_cache)
            with parallel.no_grad_sync(wrapped, d, last=i == len(batches) - 1), parallel.autocast(amp, d.device):
                if cfg.stage == "dpo":
                    out = dpo_loss(wrapped, b, cfg.dpo.beta, cfg.dpo.label_smoothing, reference, parallel.unwrap(wrapped),
                                   cfg.dpo.sft_weight)
                else:
                    out = lm_loss(wrapped, b, cfg.optim.loss_weighting)
                (out.loss_sum * scale).backward()
            loss_sum += float(out.loss_sum.detach())
            for k, v in out.metrics.items():
                extra[k] = extra.get(k, 0.0) + v
            tokens += int(out.fused_mask.sum())
            positions += out.fused_mask.numel()
            stats = batch_stats(b, tok.image_token_id, tok.placeholder_token_id)
            flops += sum(count_flops(t, c) for t, c in stats)
            samples += len(stats)
        keys = sorted(extra)
        reduced = parallel.all_sum([loss_sum, tokens, positions, flops, samples] + [extra[k] for k in keys], d)
        loss = reduced[0] / max(total_units, 1.0)
        tokens, positions, flops, samples = reduced[1], reduced[2], reduced[3], reduced[4]
        grad_norm = float(parallel.clip_grad_norm(wrapped, params, cfg.optim.grad_clip))
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            optimizer.zero_grad(set_to_none=True)
            what = f"non-finite {'loss' if not math.isfinite(loss) else 'gradient norm'} at step {step + 1} " \
                   f"(loss {loss}, grad norm {grad_norm})"
            if cfg.nan_policy == "stop":
                path = save_checkpoint()
                raise TrainingDiverged(f"{what}; stopped with a checkpoint of the weights before it at {path}. "
                                       f"Lower optim.lr, check the data of this step, or set nan_policy=skip.")
            log.warning("%s: step skipped (nan_policy=skip)", what)
            trainer["skipped_steps"] += 1
            scheduler.step()
            step += 1
            # A skipped step still ends a step: its selection, hook and checkpoint are due.
            metrics = {"loss": loss, "grad_norm": grad_norm, "skipped_steps": trainer["skipped_steps"]}
            select(step, metrics)
            if bar is not None:
                bar.update(1)
            if end_step(step, metrics):
                last_saved = step
            continue
        if first_step_check:
            before = fingerprint(model)
            had_grad = nonzero_grads(model)
        optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if first_step_check:
            for w in verify_first_step(model, before, had_grad, lambda v: parallel.all_any(v, d)):
                if d.is_main:
                    log.warning(w)
            first_step_check = False
        step += 1
        trainer["tokens"] += int(tokens)
        trainer["samples"] += int(samples)
        elapsed = time.perf_counter() - t_start
        metrics = {
            "loss": loss, "lr": lr, "grad_norm": grad_norm,
            "tokens_per_s": tokens / elapsed, "samples_per_s": samples / elapsed,
            "mfu": flops / elapsed / peak, "data_wait_share": wait / elapsed,
            "padding_fraction": 1.0 - tokens / max(positions, 1), "step_time_s": elapsed,
            "peak_memory_gb": peak_memory_gb(d.device), "tokens_seen": trainer["tokens"],
            "epoch": loader.epoch, "skipped_steps": trainer["skipped_steps"],
        }
        if keys:
            pairs = max(total_units, 1.0)
            metrics.update({k: v / pairs for k, v in zip(keys, reduced[5:])})
        select(step, metrics)
        if d.is_main and (step % cfg.logging.every_steps == 0 or step == cfg.schedule.max_steps):
            metrics["data"] = loader.stats().to_dict()
            logger.log(step, metrics)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens / elapsed:.0f}")
        if end_step(step, metrics):
            last_saved = step

    # ---- the end: last checkpoint, final model, curves ---------------------------------------
    if bar is not None:
        bar.close()
    if selector is not None and selector.history[-1]["step"] != step:
        selector.consider(step, model)  # the data ended before max_steps
    if last_saved != step:
        save_checkpoint()
    model.cache_image_tokens(False)  # the stage is over: drop the kept image tokens
    selected = None
    if selector is not None:
        selected = selector.restore_best(model, step)
        if d.is_main:
            _write_text(run_dir / "selection.json", json.dumps(
                {"source": cfg.dpo.select_source, "selected": selected, "history": selector.history}, indent=2) + "\n")
            log.info("selection: the final model is step %d of %d (preference accuracy %.4f on %d held-out pairs; "
                     "step %d: %.4f)", selected["step"], step, selected["accuracy"], selected["pairs"],
                     selector.history[-1]["step"], selector.history[-1]["accuracy"])
    final = _write_final(cfg, d, model, wrapped, processor, run_dir)
    if d.is_main:
        stats = loader.stats() if loader.taken else (loader.last_epoch_stats or loader.stats())
        log.info("data (rank 0): %s", stats.summary())
        _write_text(run_dir / "summary.json", json.dumps(
            {"step": step, "final": str(final), "trainable": man["trainable"], "data_rank0": stats.to_dict(),
             **({"selected_step": selected["step"]} if selected is not None else {}), **trainer}, indent=2) + "\n")
        logger.close()
        if cfg.logging.plot:
            plot_curves(run_dir)
    parallel.barrier(d)
    return final


def _write_final(cfg: TrainConfig, d: parallel.Dist, model, wrapped, processor, run_dir: Path) -> Path:
    """RUN_DIR/final: config.json + safetensors + processor files (LoRA merged)."""
    from ..model.checkpoint import atomic_directory, check_state_dict, write_safetensors
    from .lora import merge_lora_state

    if not cfg.checkpoint.save_final:
        return ckpt.latest_checkpoint(run_dir / "checkpoints") or run_dir
    if cfg.lora.enabled and not cfg.lora.merge_at_end:
        return ckpt.latest_checkpoint(run_dir / "checkpoints") or run_dir
    state = parallel.full_model_state(wrapped, d)
    final = run_dir / "final"
    if d.is_main:
        state = merge_lora_state(state, cfg.lora.alpha / cfg.lora.r if cfg.lora.enabled else 1.0)
        from ..model import XGenMM

        with torch.device("meta"):
            expected = XGenMM(model.config).state_dict()
        check_state_dict(expected, state, "final model")
        with atomic_directory(final) as tmp:
            model.config.save(tmp / "config.json")
            write_safetensors(state, tmp)
            processor.save_pretrained(tmp)
    parallel.barrier(d)
    return final
