"""Helpers for the data tests: real files in real formats (PNG images, JSON, JSONL,
WebDataset tar shards) written into a temporary folder."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import torch
from PIL import Image


def make_image(w: int, h: int, seed: int = 0) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    arr = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy()
    return Image.fromarray(arr, "RGB")


def png_bytes(w: int, h: int, seed: int = 0, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    make_image(w, h, seed).save(buf, format=fmt)
    return buf.getvalue()


def write_tar(path: Path, samples: list[dict]) -> Path:
    """A WebDataset shard: each sample {"__key__": k, ext: bytes|str} becomes members k.ext."""
    with tarfile.open(path, "w") as tar:
        for s in samples:
            for ext, value in s.items():
                if ext == "__key__":
                    continue
                data = value.encode() if isinstance(value, str) else value
                info = tarfile.TarInfo(f"{s['__key__']}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def llava(i: int, image: str | list | None = "img0.png", answer: str = "the word is cat", question: str = "read the word") -> dict:
    rec = {"id": f"s{i}", "conversations": [{"from": "human", "value": ("<image>\n" if image else "") + question},
                                            {"from": "gpt", "value": answer}]}
    if image is not None:
        rec["image"] = image
    return rec


