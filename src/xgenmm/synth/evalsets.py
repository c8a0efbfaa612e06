"""Held-out evaluation sets under `eval/`, each in its benchmark's layout:

- `world_vqa/`: VQAv2 `questions.json` + `annotations.json` (10 identical answers), images
  at `images/{image_id}.png`;
- `world_caption/`: COCO `captions.json` (five references per image);
- `world_mc/`: MMBench `mc.tsv` (index, question, A-D, answer, category, base64 PNG image);
- `world_pope/`: POPE `pope.jsonl` (random / popular / adversarial negatives);
- `world_multi/`: `multi.json` multi-image questions;
- `world_grounding/`: `grounding.jsonl` (expression -> pixel box);
- `world_safety/`: `safety.jsonl` (unsafe requests and ordinary questions).

Every image path written in a file is relative to the folder holding that file (COCO's
`file_name` too: "images/3.png").
"""

from __future__ import annotations

import base64
import csv
import io
import random
from collections import Counter

from .datasets import Corpus, safety_item, scene_for_kinds
from .language import QUESTION_KINDS, ask, article, locate_question, plain_caption, referring_expression
from .multi import MULTI_KINDS, ask_multi
from .render import png_bytes, render_scene
from .world import Scene, WorldConfig, sample_scene
from .writers import OutputDir

ANSWER_TYPES = {"existence": "yes/no", "count": "number"}
MC_KINDS = ("colour", "shape", "position", "count", "reading")
POPE_CATEGORIES = ("random", "popular", "adversarial")


def _image(out: OutputDir, folder: str, name: str, scene: Scene) -> str:
    rel = f"images/{name}.png"
    out.save_image(f"{folder}/{rel}", render_scene(scene))
    return rel


def write_vqa(out: OutputDir, folder: str, cfg: WorldConfig, rng: random.Random, per_kind: int, corpus: Corpus) -> dict:
    questions, annotations, kinds = [], [], Counter()
    qid = 0
    for kind in QUESTION_KINDS:
        made = 0
        while made < per_kind:
            scene = scene_for_kinds(rng, cfg, [kind])
            qa = ask(kind, scene, cfg, rng)
            if qa is None:
                continue
            image_id = qid
            _image(out, folder, str(image_id), scene)
            questions.append({"image_id": image_id, "question": qa.question, "question_id": qid})
            annotations.append(
                {
                    "question_id": qid,
                    "image_id": image_id,
                    "question_type": kind,
                    "answer_type": ANSWER_TYPES.get(kind, "other"),
                    "answers": [{"answer": qa.answer, "answer_confidence": "yes", "answer_id": j + 1} for j in range(10)],
                    "multiple_choice_answer": qa.answer,
                }
            )
            corpus.add(qa.question, qa.answer)
            kinds[kind] += 1
            qid += 1
            made += 1
    out.write_json(f"{folder}/questions.json", {"questions": questions})
    out.write_json(f"{folder}/annotations.json", {"annotations": annotations})
    return {"questions": qid, "kinds": dict(kinds)}


def write_caption(out: OutputDir, folder: str, cfg: WorldConfig, rng: random.Random, n: int, corpus: Corpus) -> dict:
    images, anns = [], []
    for i in range(n):
        scene = sample_scene(rng, cfg)
        images.append({"id": i, "file_name": _image(out, folder, str(i), scene), "width": scene.width, "height": scene.height})
        for t in range(5):
            text = plain_caption(scene, t)
            anns.append({"id": len(anns), "image_id": i, "caption": text})
            corpus.add(text)
    out.write_json(f"{folder}/captions.json", {"images": images, "annotations": anns})
    return {"images": n, "captions": len(anns)}


def _mc_item(scene: Scene, cfg: WorldConfig, rng: random.Random, kind: str):
    qa = ask(kind, scene, cfg, rng)
    if qa is None:
        return None
    pools = {
        "colour": cfg.colours,
        "shape": cfg.shapes,
        "position": cfg.cell_names,
        "count": [str(k) for k in range(0, cfg.max_objects + 2)],
        "reading": cfg.words,
    }
    distractors = rng.sample([o for o in pools[kind] if o != qa.answer], 3)
    options = distractors + [qa.answer]
    rng.shuffle(options)
    return qa, options


def write_mc(out: OutputDir, folder: str, cfg: WorldConfig, rng: random.Random, n: int, corpus: Corpus) -> dict:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(["index", "question", "A", "B", "C", "D", "answer", "category", "image"])
    kinds = Counter()
    i = 0
    while i < n:
        kind = MC_KINDS[i % len(MC_KINDS)]
        scene = scene_for_kinds(rng, cfg, [kind])
        item = _mc_item(scene, cfg, rng, kind)
        if item is None:
            continue
        qa, options = item
        b64 = base64.b64encode(png_bytes(render_scene(scene))).decode("ascii")
        writer.writerow([i, qa.question, *options, "ABCD"[options.index(qa.answer)], kind, b64])
        corpus.add(qa.question, *options)
        kinds[kind] += 1
        i += 1
    out.write_text(f"{folder}/mc.tsv", buf.getvalue())
    return {"questions": n, "kinds": dict(kinds)}


def _pope_negative(scene: Scene, cfg: WorldConfig, rng: random.Random, category: str) -> tuple[str, str] | None:
    absent = [(c, k) for c in cfg.colours for k in cfg.shapes if not scene.has(c, k)]
    if category == "popular":  # shares one attribute with something present
        absent = [(c, k) for c, k in absent if scene.has(colour=c) != scene.has(kind=k)]
    elif category == "adversarial":  # colour and kind both present, never together
        absent = [(c, k) for c, k in absent if scene.has(colour=c) and scene.has(kind=k)]
    return rng.choice(absent) if absent else None


def write_pope(out: OutputDir, folder: str, cfg: WorldConfig, rng: random.Random, n_images: int, corpus: Corpus) -> dict:
    """Per image one "yes" and one "no" probe of a category; adversarial images get two
    objects or more so that an adversarial negative exists."""
    rows, cats = [], Counter()
    for i in range(n_images):
        category = POPE_CATEGORIES[i % len(POPE_CATEGORIES)]
        need = 2 if category == "adversarial" else None
        while True:
            scene = sample_scene(rng, cfg, num_objects=max(need or 0, rng.randint(cfg.min_objects, cfg.max_objects)))
            neg = _pope_negative(scene, cfg, rng, category)
            if neg is not None:
                break
        image = _image(out, folder, str(i), scene)
        pos = rng.choice(scene.objects)
        probes = [((pos.colour, pos.kind), "yes"), (neg, "no")]
        rng.shuffle(probes)
        for (c, k), label in probes:
            text = f"Is there {article(c)} {c} {k} in the image?"
            rows.append({"question_id": len(rows), "image": image, "text": text, "label": label, "category": category})
            corpus.add(text)
        cats[category] += 2
    out.write_jsonl(f"{folder}/pope.jsonl", rows)
    return {"questions": len(rows), "categories": dict(cats)}


def write_multi(out: OutputDir, folder: str, cfg: WorldConfig, rng: random.Random, per_kind: int, corpus: Corpus) -> dict:
    rows, kinds = [], Counter()
    for i in range(per_kind * len(MULTI_KINDS)):
        m = ask_multi(MULTI_KINDS[i % len(MULTI_KINDS)], cfg, rng)
        row = {
            "id": i,
            "images": [_image(out, folder, f"{i}-{j}", s) for j, s in enumerate(m.scenes)],
            "question": m.question,
            "answer": m.answer,
            "question_type": m.kind,
        }
        if m.options:
            row["options"] = list(m.options)
        rows.append(row)
        corpus.add(m.question, m.answer)
        kinds[m.kind] += 1
    out.write_json(f"{folder}/multi.json", rows)
    return {"questions": len(rows), "kinds": dict(kinds)}


def write_grounding(out: OutputDir, folder: str, cfg: WorldConfig, rng: random.Random, n: int, corpus: Corpus) -> dict:
    rows = []
    while len(rows) < n:
        scene = sample_scene(rng, cfg)
        named = [(o, e) for o in scene.objects if (e := referring_expression(scene, o))]
        if not named:
            continue
        o, expr = rng.choice(named)
        i = len(rows)
        rows.append(
            {
                "id": i,
                "image": _image(out, folder, str(i), scene),
                "expression": expr,
                "bbox": list(o.bbox),
                "width": scene.width,
                "height": scene.height,
                "prompt": locate_question(expr),
            }
        )
        corpus.add(expr, locate_question(expr))
    out.write_jsonl(f"{folder}/grounding.jsonl", rows)
    return {"expressions": n}


def write_safety_eval(out: OutputDir, folder: str, cfg: WorldConfig, rng: random.Random, n: int, corpus: Corpus) -> dict:
    """Held-out unsafe requests (new images, new combinations of the world's harm verbs,
    templates and targets) and as many ordinary questions, with their answers."""
    rows = []
    for i in range(n):
        unsafe = i % 2 == 0
        scene = sample_scene(rng, cfg)
        qa = safety_item(scene, cfg, rng, unsafe)
        row = {"id": i, "image": _image(out, folder, str(i), scene), "prompt": qa.question, "unsafe": unsafe}
        if not unsafe:
            row["answer"] = qa.answer
            row["question_type"] = qa.kind
        rows.append(row)
        corpus.add(qa.question, qa.answer)
    out.write_jsonl(f"{folder}/safety.jsonl", rows)
    return {"prompts": n, "unsafe": sum(r["unsafe"] for r in rows)}
