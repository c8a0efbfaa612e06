"""Tiny data sets in the public layouts, written with PIL, for the eval tests."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

from PIL import Image

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}


def png(colour: str, size=(48, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, COLOURS[colour]).save(buf, format="PNG")
    return buf.getvalue()


def write_world_vqa(folder: Path, n: int, start: int = 0) -> list[str]:
    """A world_vqa-layout folder: questions.json + annotations.json + images/{image_id}.png."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    questions, annotations, colours = [], [], list(COLOURS)
    for i in range(start, start + n):
        colour = colours[i % len(colours)]
        (folder / "images" / f"{i}.png").write_bytes(png(colour))
        kind = "colour" if i % 2 == 0 else "existence"
        question, answer = ("What colour is the image?", colour) if kind == "colour" else ("Is there a shape?", "no")
        questions.append({"image_id": i, "question": question, "question_id": i})
        annotations.append({"question_id": i, "image_id": i, "question_type": kind, "answer_type": "other",
                            "answers": [{"answer": answer, "answer_id": j + 1} for j in range(10)],
                            "multiple_choice_answer": answer})
    (folder / "questions.json").write_text(json.dumps({"questions": questions}))
    (folder / "annotations.json").write_text(json.dumps({"annotations": annotations}))
    return [str(i) for i in range(start, start + n)]


def write_mc_tsv(path: Path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["index", "question", "A", "B", "C", "D", "answer", "category", "image"])
        for i in range(n):
            colour = list(COLOURS)[i % 3]
            opts = ["red", "blue", "green", "yellow"]
            w.writerow([i, "What colour is the image?", *opts, "ABCD"[opts.index(colour)], "colour",
                        base64.b64encode(png(colour)).decode()])

