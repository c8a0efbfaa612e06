"""Fixtures of the curation tests: scenes of coloured shapes whose true boxes are known,
images of the synthetic world's words rendered large, and inputs in the three source formats
(image folder, WebDataset tar, Parquet)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from xgenmm.synth.world import WORDS  # noqa: F401  (the synthetic world's words, for the tests)

# name, colour, box (pixels) on a 160x120 canvas
SCENES = [
    ("a red square and a blue circle on the grass", [("red square", "red", (10, 10, 60, 50)), ("blue circle", "blue", (100, 60, 150, 110))]),
    ("green triangle, stock photo", [("green triangle", "green", (60, 30, 110, 90))]),
    ("a yellow star near a black box", [("yellow star", "yellow", (5, 70, 45, 115)), ("black box", "black", (110, 5, 155, 40))]),
]
CANVAS = (160, 120)


def scene_image(objects) -> Image.Image:
    img = Image.new("RGB", CANVAS, "white")
    d = ImageDraw.Draw(img)
    for _, colour, box in objects:
        d.rectangle(box, fill=colour)
    return img


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def scene_records():
    """(key, png bytes, alt-text, meta with the true boxes) of every scene."""
    out = []
    for i, (alt, objects) in enumerate(SCENES):
        meta = {"uid": f"uid-{i}", "url": f"http://example.com/{i}.png",
                "objects": [{"name": n, "box": list(b)} for n, _, b in objects]}
        out.append((f"scene{i:03d}", png_bytes(scene_image(objects)), alt, meta))
    return out


def write_folder(root: Path, records, corrupt: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for key, data, alt, meta in records:
        (root / f"{key}.png").write_bytes(data)
        if alt is not None:
            (root / f"{key}.txt").write_text(alt)
        (root / f"{key}.json").write_text(json.dumps(meta))
    for j in range(corrupt):
        (root / f"zz_corrupt{j}.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return root


def write_tar(path: Path, records) -> Path:
    import webdataset as wds

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f, wds.TarWriter(f) as tw:
        for key, data, alt, meta in records:
            sample = {"__key__": key, "png": data, "json": json.dumps(meta)}
            if alt is not None:
                sample["txt"] = alt
            tw.write(sample)
    return path


def write_parquet(path: Path, records) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"uid": m["uid"], "url": m["url"], "image": data, "caption": alt} for _, data, alt, m in records]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path




def word_image(words: list[str], size: int = 48) -> tuple[Image.Image, list[tuple[str, tuple]]]:
    """Black words on white, one per line, at known boxes (PIL's own text boxes)."""
    font = ImageFont.load_default(size=size)
    img = Image.new("RGB", (480, 40 + 90 * len(words)), "white")
    d = ImageDraw.Draw(img)
    truth = []
    for i, w in enumerate(words):
        xy = (30 + 40 * i, 30 + 90 * i)
        d.text(xy, w, font=font, fill="black")
        truth.append((w, d.textbbox(xy, w, font=font)))
    return img, truth
