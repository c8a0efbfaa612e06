"""Curation benchmark: images/s per core of the OCR pipeline (Tesseract) and of the grounding
pipeline (a tiny randomly initialised OWLv2, and the known-boxes oracle that isolates our own
code), with the share of time spent inside the engine vs in our code (decode, filters,
captions, Parquet and WebDataset writing).

    python benchmarks/bench_curate.py [--images 40] [--no-write]

The data: one WebDataset shard of JPEG images (640x480) with 2-4 words of the synthetic
world's vocabulary rendered at 28-48 px over coloured shapes, and alt-text naming the shapes.
Each pipeline runs in this process, one thread (Tesseract: OMP_THREAD_LIMIT=1), after a warm-up
shard, so a rate is per core. Prints a table and updates the "Curation" section of
BENCHMARKS.md."""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # Tesseract's own threads: one core

import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, table, write_section  # noqa: E402

COLOURS = {"red": (220, 30, 30), "green": (20, 160, 40), "blue": (30, 70, 225), "yellow": (240, 200, 20)}
SHAPES = ("square", "circle")


def make_shard(path: Path, n: int, seed: int = 0) -> Path:
    import webdataset as wds

    from xgenmm.synth.world import WORDS

    rng = random.Random(seed)
    with open(path, "wb") as f, wds.TarWriter(f) as tw:
        for i in range(n):
            img = Image.new("RGB", (640, 480), (235, 235, 228))
            d = ImageDraw.Draw(img)
            names, objects = [], []
            for _ in range(rng.randint(1, 3)):
                colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
                x, y, s = rng.randint(0, 500), rng.randint(0, 340), rng.randint(60, 140)
                box = (x, y, min(639, x + s), min(479, y + s))
                (d.rectangle if shape == "square" else d.ellipse)(box, fill=COLOURS[colour])
                names.append(f"{colour} {shape}")
                objects.append({"name": f"{colour} {shape}", "box": list(box)})
            for j in range(rng.randint(2, 4)):
                font = ImageFont.load_default(size=rng.choice([28, 36, 48]))
                d.text((rng.randint(10, 420), 20 + 110 * j), rng.choice(WORDS), font=font, fill=(15, 15, 15))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=90)
            tw.write({"__key__": f"{i:06d}", "jpg": buf.getvalue(), "txt": "a " + " and a ".join(names),
                      "json": json.dumps({"objects": objects})})
    return path


def time_pipeline(config, shard_path: Path, warm_path: Path, out: Path) -> dict:
    from xgenmm.curate.runner import RunConfig, process_shard
    from xgenmm.curate.sources import list_shards

    process_shard(config, list_shards(str(warm_path))[0], str(out / "warm"), run=RunConfig(str(out / "warm")))
    res = process_shard(config, list_shards(str(shard_path))[0], str(out / "run"), run=RunConfig(str(out / "run")))
    shutil.rmtree(out)
    c = res["counts"]
    return {"read": c.get("read", 0), "written": c.get("written", 0), "total_s": res["total_s"], "engine_s": res["engine_s"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=40, help="images in the benchmark shard")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()

    import logging

    logging.getLogger("transformers").setLevel(logging.ERROR)
    from xgenmm.curate import GroundingTaskConfig, OCRTaskConfig
    from xgenmm.curate.tiny_models import tiny_owlv2

    torch.set_num_threads(1)
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shard = make_shard(tmp / "bench.tar", args.images)
        warm = make_shard(tmp / "warm.tar", 2, seed=1)
        owl = tiny_owlv2(tmp / "owlv2")
        pipelines = [
            ("grounding, known boxes (our code only)", "none", GroundingTaskConfig(detector="known")),
            ("grounding, tiny OWLv2 (64 px, width 32)", "OWLv2 processor, forward, post-processing",
             GroundingTaskConfig(detector=str(owl), score_threshold=0.0)),
        ]
        if shutil.which("tesseract"):
            pipelines.insert(0, ("ocr, Tesseract", "tesseract (a subprocess per image)", OCRTaskConfig()))
        else:
            print("tesseract not installed: OCR row skipped", file=sys.stderr)
        for name, engine, cfg in pipelines:
            r = time_pipeline(cfg, shard, warm, tmp / "out")
            results[name] = r
            share = r["engine_s"] / r["total_s"] if r["total_s"] else 0.0
            rows.append([name, f"{r['read'] / r['total_s']:.1f}", f"{share:.0%}", f"{1 - share:.0%}",
                         f"{r['written']}/{r['read']}", engine])

    headers = ["pipeline", "images/s per core", "engine", "our code", "written", "engine is"]
    print(table(headers, rows))
    if not args.no_write:
        load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
        body = (
            f"Machine: {machine()}; load average {load} while it ran (a shared machine: other processes "
            "took CPU, so these rates are lower bounds).\n\n"
            f"`python benchmarks/bench_curate.py --images {args.images}`: one WebDataset shard of {args.images} JPEG "
            "images (640x480, 2-4 words of the synthetic world rendered at 28-48 px over coloured shapes, alt-text "
            "naming the shapes), each pipeline in one process with one thread, after a warm-up shard. "
            "\"engine\" is the time inside the OCR engine or detector; \"our code\" is the rest: reading the shard, "
            "decoding, filters, captions, writing Parquet and the WebDataset shard.\n\n"
            + table(headers, rows) + "\n\n"
            "A run scales by shard: N worker processes (`--workers N`) or a Ray Data pipeline (`--ray ADDRESS`) "
            "give about N times the per-core rate while shards outnumber workers. The tiny detector measures our code path "
            "around a detector, not a real one: a released OWLv2 or Grounding DINO checkpoint costs far more per "
            "image and belongs on a GPU (`--device cuda`)."
        )
        write_section("Curation", body)
        print("updated BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
