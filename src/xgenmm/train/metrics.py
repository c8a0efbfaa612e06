"""What a researcher watches: per-step metrics in RUN_DIR/metrics.jsonl and TensorBoard, batch
statistics (tokens, padding, model FLOPs for MFU), peak memory, and the loss / learning-rate
curves as a PNG at the end."""

from __future__ import annotations

import json
import logging
import os
import resource
from pathlib import Path

import torch

log = logging.getLogger("xgenmm.train")

# Dense bf16 peak TFLOP/s per GPU (no sparsity), by a substring of the device name.
GPU_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0,
                   "RTX 4090": 165.0, "RTX 3090": 71.0, "V100": 125.0, "T4": 65.0}


def peak_flops(device: torch.device, configured_tflops: float = 0.0) -> float:
    """Per-device peak FLOP/s for MFU: the configured value, a table for known GPUs, or on CPU
    cores x clock x 32 (two 256-bit FMA units, fp32) as a rough AVX2 estimate."""
    if configured_tflops:
        return configured_tflops * 1e12
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tf in GPU_PEAK_TFLOPS.items():
            if key in name:
                return tf * 1e12
        return 100e12
    mhz = 2000.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                mhz = float(line.split(":")[1])
                break
    except OSError:
        pass
    return torch.get_num_threads() * mhz * 1e6 * 32


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def batch_stats(batch: dict, image_token_id: int, placeholder_token_id: int) -> list[tuple[int, int]]:
    """(text tokens, crops) per sample: what `XGenMM.flops_per_sample` takes. Packed rows
    count each of their segments as a sample."""
    ids = batch["input_ids"]
    segs = batch.get("segment_ids")
    if segs is None:
        segs = batch["attention_mask"].long()  # one segment per row
    crops = [int(p.shape[0]) for p in batch["pixel_values"]]
    is_tag = ids == image_token_id
    text = (segs > 0) & ~is_tag & (ids != placeholder_token_id)
    out = []
    image = 0
    for b in range(ids.shape[0]):
        row_tags = is_tag[b].nonzero().flatten().tolist()
        tag_seg = segs[b, row_tags].tolist()
        for s in sorted(set(segs[b].tolist()) - {0}):
            n_crops = 0
            for ts in tag_seg:
                if ts == s:
                    n_crops += crops[image]
                    image += 1
            out.append((int((text[b] & (segs[b] == s)).sum()), n_crops))
    return out


class MetricsLogger:
    """Rank 0 only: one JSON line per logged step, the same scalars to TensorBoard."""

    def __init__(self, run_dir: Path, tensorboard: bool, resume_step: int = 0):
        self.path = run_dir / "metrics.jsonl"
        if self.path.exists():
            # Keep the history up to the resumed step; later lines belong to the lost run.
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        self.file = open(self.path, "a")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)
            except ImportError:
                log.warning("tensorboard is not installed; metrics go to metrics.jsonl only")

    def log(self, step: int, metrics: dict) -> None:
        row = {"step": step, **metrics}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.tb.add_scalar(k, v, step)
                elif isinstance(v, dict):
                    for kk, vv in v.items():
                        if isinstance(vv, (int, float)):
                            self.tb.add_scalar(f"{k}/{kk}", vv, step)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(run_dir: Path) -> Path | None:
    """RUN_DIR/curves.png: loss (and DPO accuracy when present) and learning rate per step."""
    rows = [r for r in read_metrics(run_dir) if "loss" in r]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].plot(steps, [r["loss"] for r in rows], lw=1.2)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("loss")
    axes[0].set_title("training loss")
    axes[0].grid(alpha=0.3)
    axes[1].plot(steps, [r["lr"] for r in rows], color="tab:orange", lw=1.2)
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("learning rate")
    axes[1].set_title("learning rate")
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    out = run_dir / "curves.png"
    tmp = run_dir / f".curves.{os.getpid()}.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)
    return out
