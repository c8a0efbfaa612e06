"""What the two in-memory caches save on a multi-epoch stage with frozen vision parts.

The demo's single-image SFT shape: the easy world's conversations, the demo's model (any-
resolution tiles as the world's cells, 4-layer LM of width 128, random weights: timing only),
vision encoder and resampler frozen, batch 32, CPU. The same stage runs three times: no cache,
the encoded-sample cache (`data.cache_mb`), and both caches (`runtime.image_token_cache`).
Step times are averaged over the epochs after the first (the first fills the caches).

    python benchmarks/bench_caches.py                 # 800 conversations, 3 epochs
    python benchmarks/bench_caches.py --no-write      # print only

Prints a table and updates the "Caches" section of BENCHMARKS.md."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, table, write_section  # noqa: E402

from xgenmm.demo.presets import model_overrides  # noqa: E402
from xgenmm.synth.corpus import build_world_tokenizer  # noqa: E402
from xgenmm.synth.generate import WorldSize, generate_world  # noqa: E402
from xgenmm.train import load_config, run_stage  # noqa: E402
from xgenmm.train.metrics import read_metrics  # noqa: E402

VARIANTS = [
    ("no cache", {}),
    ("encoded samples (data.cache_mb)", {"data.cache_mb": 2048}),
    ("+ image tokens (runtime.image_token_cache)", {"data.cache_mb": 2048, "runtime.image_token_cache": True}),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=800, help="single-image conversations")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()
    per_epoch = args.samples // args.batch_size
    steps = per_epoch * args.epochs
    rows, losses = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        size = WorldSize(captions=8, interleaved=2, shard_size=8, sft_single=args.samples, sft_multi=4, dpo=4, safety=4,
                         vqa_per_kind=1, caption_eval=1, mc=1, pope_images=1, multi_per_kind=1, grounding=1,
                         safety_eval=1, vqa_train_per_kind=1, caption_train=1)
        generate_world(world, seed=0, preset="easy", size=size, progress=False)
        build_world_tokenizer(world, vocab_size=640)
        base = {
            "stage": "sft", "seed": 0, "model.preset": "tiny", "model.tokenizer": str(world / "tokenizer"),
            "model.image_mode": "anyres", "model.preset_overrides": model_overrides(),
            "data.source": str(world / "sft" / "single.json"), "data.encode.max_length": 512,
            "data.batch.batch_size": args.batch_size, "data.batch.drop_last": True,
            "trainable.vision_encoder": False, "trainable.vision_tokenizer": False,
            "optim.lr": 1e-3, "schedule.max_steps": steps, "schedule.warmup_steps": 5,
            "runtime.device": "cpu", "runtime.deterministic": False, "checkpoint.every_steps": 0,
            "checkpoint.resume": "never", "checkpoint.save_final": False, "logging.every_steps": 1,
            "logging.tensorboard": False, "logging.plot": False, "logging.progress": False,
        }
        for name, extra in VARIANTS:
            run = Path(tmp) / f"run{len(rows)}"
            ov = {**base, **extra, "run_dir": str(run)}
            t0 = time.perf_counter()
            run_stage(load_config(None, [f"{k}={json.dumps(v)}" for k, v in ov.items()]))
            wall = time.perf_counter() - t0
            metrics = [r for r in read_metrics(run) if "step_time_s" in r]
            later = [r for r in metrics if r["step"] > per_epoch]
            losses[name] = metrics[-1]["loss"]
            rows.append([name, f"{statistics.mean(r['step_time_s'] for r in later):.3f}",
                         f"{statistics.mean(r['samples_per_s'] for r in later):.0f}",
                         f"{statistics.mean(r['data_wait_share'] for r in later):.0%}", f"{wall:.0f}",
                         f"{metrics[-1]['loss']:.8f}"])
    base_step = float(rows[0][1])
    for r in rows:
        r.insert(2, f"{base_step / float(r[1]):.2f}x")
    headers = ["loader", "s/step after epoch 1", "speed-up", "samples/s", "data wait", "stage wall (s)", "last loss"]
    print(table(headers, rows))
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    if not args.no_write:
        body = (
            f"Machine: {machine()}; load average {load} while it ran.\n\n"
            f"`python benchmarks/bench_caches.py --samples {args.samples} --epochs {args.epochs}`: the demo's "
            f"single-image SFT shape ({args.samples} easy-world conversations, the demo's model with random weights, "
            f"vision encoder and resampler frozen, batch {args.batch_size}, {steps} steps), three times. Step times "
            "are the mean over the epochs after the first, which fills the caches.\n\n"
            + table(headers, rows) + "\n\n"
            "The sample cache gives the uncached run's batches exactly, so its losses are the same to the last "
            "digit; with the image-token cache the vision side runs in other batch compositions, so the losses "
            "agree to float rounding."
        )
        write_section("Caches", body)
        print("updated BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
