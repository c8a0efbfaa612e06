"""Data pipeline benchmark: samples/s of the full path (read, decode, anyres crops,
tokenise with labels, collate) per worker and with several workers, and the padding
fraction with and without packing on a realistic SFT length mix.

    python benchmarks/bench_data.py [--samples 240] [--workers 1 2] [--no-write]

The data: LLaVA-style conversations whose text lengths follow a log-normal mix (median
about 120 words, a tail to 1,500) with 0 images (10%), 1 image (75%) or 2-4 images (15%)
of common photo sizes (JPEG, 400x300 to 1280x720), the release's processor settings
(anyres at 384, 128 tokens per crop, max_length 2048) and a byte-level BPE tokenizer.
Prints a table and updates the "Data pipeline" section of BENCHMARKS.md."""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, table, write_section  # noqa: E402

SIZES = [(640, 480), (480, 640), (1024, 768), (512, 512), (1280, 720), (400, 300), (800, 600)]
WORDS = ("the a red blue green large small circle square star image shows left right top bottom of in and "
         "with is are there what how many colour shape word text person dog cat street car table").split()


def make_data(root: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    images = []
    for i, (w, h) in enumerate(SIZES * 2):
        x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
        y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
        noise = np.random.default_rng(i).normal(0, 20, (h, w, 3))
        arr = np.clip((x * (i % 3 == 0) + y * (i % 3 != 0)) * np.array([1, 0.6, 0.3]) + noise, 0, 255).astype(np.uint8)
        name = f"im{i}.jpg"
        Image.fromarray(arr, "RGB").save(root / name, quality=90)
        images.append(name)
    recs = []
    for k in range(n):
        r = rng.random()
        n_img = 0 if r < 0.10 else 1 if r < 0.85 else rng.randint(2, 4)
        words = lambda m: " ".join(rng.choice(WORDS) for _ in range(max(1, m)))  # noqa: E731
        n_words = min(1500, int(math.exp(rng.gauss(math.log(80), 0.9))))
        q_words = max(4, min(60, n_words // 5))
        turns = [{"from": "human", "value": "<image>\n" * n_img + words(q_words)},
                 {"from": "gpt", "value": words(n_words - q_words)}]
        rec = {"id": f"b{k}", "conversations": turns}
        if n_img:
            rec["image"] = [rng.choice(images) for _ in range(n_img)]
        recs.append(rec)
    path = root / "bench.json"
    path.write_text(json.dumps(recs))
    return path


def processor():
    from xgenmm.model.image_processing import XGenMMImageProcessor
    from xgenmm.model.processor import XGenMMProcessor
    from xgenmm.model.tokenizer import train_tokenizer

    corpus = [" ".join(random.Random(i).choice(WORDS) for _ in range(60)) for i in range(300)]
    return XGenMMProcessor(XGenMMImageProcessor(384, "anyres"), train_tokenizer(corpus, vocab_size=1000), 128)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=240, help="conversations in the benchmark set")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="DataLoader worker counts to time")
    ap.add_argument("--batch-size", type=int, default=8, help="rows per batch (the release's per-GPU batch)")
    ap.add_argument("--step-seconds", type=float, default=1.0,
                    help="time of one training step to feed (for the workers-needed estimate)")
    ap.add_argument("--padding-samples", type=int, default=1000, help="conversations for the padding estimate")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()

    from xgenmm.data import BatchConfig, EncodeConfig, LoaderConfig, Stream, build_loader
    from xgenmm.data.check import padding_fractions
    from xgenmm.data.errors import SkipStats
    from xgenmm.data.loader import DataPipeline

    import logging

    logging.getLogger("xgenmm.data").setLevel(logging.ERROR)  # skips are counted, not printed
    torch.set_num_threads(1)
    proc = processor()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = make_data(Path(tmp), args.samples)
        enc_cfg = EncodeConfig(max_length=2048)

        # One worker, in process: the full path up to collated batches.
        pipe = DataPipeline(Stream(str(path)), proc, enc_cfg, BatchConfig(batch_size=args.batch_size))
        t0 = time.perf_counter()
        n_batches = sum(1 for _ in pipe.batches())
        t_full = time.perf_counter() - t0
        per_worker = args.samples / t_full
        rows.append(["full path, 1 worker in process", f"{per_worker:.1f}", f"{n_batches} batches"])

        # Where the time goes: images (decode + anyres crops) vs text (render, tokenise, labels).
        stats = SkipStats()
        t0 = time.perf_counter()
        encoded = list(pipe.samples(stats=stats, decode_pixels=False))
        t_text = time.perf_counter() - t0
        rows.append(["without crops (decode + text only)", f"{args.samples / t_text:.1f}",
                     f"{stats.ok} usable, {sum(stats.skipped.values())} skipped"])

        for w in args.workers:
            loader = build_loader(str(path), proc, enc_cfg, BatchConfig(batch_size=args.batch_size),
                                  loader=LoaderConfig(num_workers=w))
            # Steady state: from the first batch (workers started) to the last.
            it = iter(loader)
            first = len(next(it)["sample_ids"])
            t0 = time.perf_counter()
            n = sum(len(b["sample_ids"]) for b in it)
            dt = time.perf_counter() - t0
            rows.append([f"DataLoader, {w} worker{'s' * (w > 1)}", f"{n / dt:.1f}", f"steady state, {n + first} samples"])

        # Padding needs only lengths (no crops): a larger set of the same mix.
        pad_dir = Path(tmp) / "pad"
        pad_dir.mkdir()
        pad_pipe = DataPipeline(Stream(str(make_data(pad_dir, args.padding_samples, seed=1))), proc, enc_cfg)
        encoded = list(pad_pipe.samples(decode_pixels=False))
        lengths = [e.length for e in encoded]
        images = [e.num_images for e in encoded]
        pad = padding_fractions(lengths, images, enc_cfg.max_length, args.batch_size)
        # The same samples packed into rows twice as long (e.g. a 4k-context LLM).
        pad2 = padding_fractions(lengths, images, 2 * enc_cfg.max_length, args.batch_size)

    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    need = args.batch_size / args.step_seconds
    workers_needed = math.ceil(need / per_worker)
    print(table(["path", "samples/s", "note"], rows))
    print(f"padding: {pad['padding_fraction_padded']:.1%} padded, {pad['padding_fraction_packed']:.1%} packed "
          f"({len(lengths)} samples, mean length {np.mean(lengths):.0f}, max_length {enc_cfg.max_length}); "
          f"{pad2['padding_fraction_packed']:.1%} packed into {2 * enc_cfg.max_length}-position rows")
    print(f"a step of {args.batch_size} samples every {args.step_seconds:g} s needs {need:.1f} samples/s: "
          f"{workers_needed} worker(s) per GPU")
    if not args.no_write:
        body = (
            f"Machine: {machine()}; load average {load} while it ran (a shared machine: "
            "other processes took CPU, so these rates are lower bounds).\n\n"
            f"`python benchmarks/bench_data.py --samples {args.samples}`: {args.samples} LLaVA-style conversations "
            "(0 images 10%, 1 image 75%, 2-4 images 15%; JPEG 400x300 to 1280x720; log-normal text lengths, "
            "median ~80 words), release processor settings (anyres 384, 128 tokens per crop), max_length 2048, "
            f"batch {args.batch_size}.\n\n"
            + table(["path", "samples/s", "note"], rows) + "\n\n"
            + table(["batching", "padding fraction"], [
                ["right-padded batches (stream order)", f"{pad['padding_fraction_padded']:.1%}"],
                ["packed rows (best fit, window 64)", f"{pad['padding_fraction_packed']:.1%}"],
                [f"packed rows of {2 * enc_cfg.max_length} positions (same samples)", f"{pad2['padding_fraction_packed']:.1%}"],
            ]) + "\n\n"
            f"Padding measured on {len(lengths)} samples of the same mix; "
            f"mean sample length {np.mean(lengths):.0f} positions (image tokens included), half of them between "
            f"{np.percentile(lengths, 25):.0f} and {np.percentile(lengths, 75):.0f}: two fit a 2048-position row and "
            "a third rarely does, so what packing leaves is mostly that gap; longer rows shrink it. "
            f"Feeding a step of {args.batch_size} samples every {args.step_seconds:g} s takes {need:.1f} samples/s, "
            f"i.e. {workers_needed} worker(s) per GPU at the single-worker rate above."
        )
        write_section("Data pipeline", body)
        print("updated BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
