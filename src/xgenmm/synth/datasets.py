"""Training data of every kind the recipe consumes, in the real formats:

- `pretrain/captions-*.tar`: WebDataset caption shards (`png` + `txt` + `json` metadata),
  plain, OCR-style and grounding-style captions;
- `pretrain/interleaved-*.tar`: WebDataset interleaved documents (`json` = {"segments": [...]},
  images as members `0.png`, `1.png`, ...);
- `sft/single.json`, `sft/multi.json`: LLaVA JSON conversations with `<image>` tags;
- `dpo/pairs.jsonl`: preference pairs {id, image, prompt, chosen, rejected};
- `safety/train.json`: LLaVA JSON, refusals of the world's unsafe requests mixed with
  ordinary questions.

Image paths inside JSON files are relative to the folder holding that file.
"""

from __future__ import annotations

import random
from collections import Counter

from .language import QA, QUESTION_KINDS, REFUSAL, ask, caption, describe, existence_drill, plain_caption, unsafe_request
from .multi import MULTI_KINDS, ask_multi
from .render import png_bytes, render_scene
from .world import Scene, WorldConfig, make_object, sample_scene
from .writers import OutputDir


class Corpus:
    """Every distinct text the world says, in first-seen order (the tokenizer's corpus)."""

    def __init__(self) -> None:
        self._texts: dict[str, None] = {}

    def add(self, *texts: str) -> None:
        for t in texts:
            self._texts.setdefault(t, None)

    def __iter__(self):
        return iter(self._texts)

    def __len__(self) -> int:
        return len(self._texts)


def scene_for_kinds(rng: random.Random, cfg: WorldConfig, kinds: list[str]) -> Scene:
    """A scene on which every kind in `kinds` can be asked (a word for reading)."""
    return sample_scene(rng, cfg, num_words=rng.randint(1, cfg.max_words) if "reading" in kinds else None)


def ask_many(rng: random.Random, cfg: WorldConfig, scene: Scene, kinds: list[str]) -> list[QA]:
    out = []
    for kind in kinds:
        qa = describe(scene, rng) if kind == "describe" else ask(kind, scene, cfg, rng)
        if qa is not None:
            out.append(qa)
    return out


def llava_conversation(qas: list[QA], num_images: int) -> list[dict]:
    """LLaVA turns; the image tags (one per image) open the first human turn."""
    conv = []
    for i, qa in enumerate(qas):
        tags = "<image>\n" * num_images if i == 0 else ""
        conv.append({"from": "human", "value": tags + qa.question})
        conv.append({"from": "gpt", "value": qa.answer})
    return conv


def _save(out: OutputDir, folder: str, name: str, scene: Scene) -> str:
    """Save the scene's image under `folder/images/` and return its path relative to `folder`."""
    rel = f"images/{name}.png"
    out.save_image(f"{folder}/{rel}", render_scene(scene))
    return rel


# ---- pretraining ------------------------------------------------------------------------

CAPTION_STYLE_WEIGHTS = {
    "plain": 4,
    "ocr_quoted": 1,
    "ocr_tagged": 1,
    "grounding_bbox": 1,
    "grounding_starts": 1,
    "grounding_phrase": 1,
}


def write_caption_shards(out: OutputDir, cfg: WorldConfig, rng: random.Random, n: int, per_shard: int, corpus: Corpus) -> dict:
    styles = Counter()

    def samples():
        names, weights = list(CAPTION_STYLE_WEIGHTS), list(CAPTION_STYLE_WEIGHTS.values())
        for i in range(n):
            scene = sample_scene(rng, cfg)
            style = rng.choices(names, weights)[0]
            if style.startswith("ocr_") and not scene.words:
                style = "plain"
            text = caption(scene, style, template=rng.randrange(5))
            styles[style] += 1
            corpus.add(text)
            key = f"cap-{i:06d}"
            meta = {"uid": key, "caption_style": style, "scene": scene.to_dict()}
            yield {"__key__": key, "png": png_bytes(render_scene(scene)), "txt": text, "json": meta}

    shards = out.write_shards("pretrain/captions", samples(), per_shard)
    return {"samples": n, "shards": shards, "styles": dict(sorted(styles.items()))}


QUIZ_SHARE = 3  # every third interleaved document is a quiz page


def quiz_segments(rng: random.Random, cfg: WorldConfig, k: int) -> tuple[list[Scene], list[dict]]:
    """A quiz page: `k` pictures, each followed by "Question:{q} Short answer:{a}" (the
    few-shot VQA form of the base convention), as web pages with exercises are part of real
    interleaved corpora. It is what lets the base model answer a question in context."""
    scenes, segments = [], []
    for j in range(k):
        kinds = [rng.choice(QUESTION_KINDS)]
        scene = scene_for_kinds(rng, cfg, kinds)
        qa = ask(kinds[0], scene, cfg, rng)
        if qa is None:  # the kind cannot be asked of this scene: a caption line instead
            qa = describe(scene, rng)
        scenes.append(scene)
        segments.append({"type": "image", "member": f"{j}.png"})
        segments.append({"type": "text", "text": f"Question:{qa.question} Short answer:{qa.answer}"})
    return scenes, segments


def write_interleaved_shards(out: OutputDir, cfg: WorldConfig, rng: random.Random, n: int, per_shard: int, corpus: Corpus) -> dict:
    """Picture pages (2-4 pictures, each followed by its caption, and a closing count) and,
    every QUIZ_SHARE-th document, quiz pages (`quiz_segments`)."""
    num_images, kinds = Counter(), Counter()

    def samples():
        for i in range(n):
            k = rng.randint(2, 4)
            sample = {"__key__": f"doc-{i:06d}"}
            if i % QUIZ_SHARE == QUIZ_SHARE - 1:
                scenes, segments = quiz_segments(rng, cfg, k)
                kinds["quiz"] += 1
            else:
                scenes = [sample_scene(rng, cfg) for _ in range(k)]
                segments = [{"type": "text", "text": f"a page with {k} pictures."}]
                for j, scene in enumerate(scenes):
                    segments.append({"type": "image", "member": f"{j}.png"})
                    segments.append({"type": "text", "text": f"picture {j + 1} shows {plain_caption(scene, rng.randrange(5))}"})
                total = sum(len(s.objects) for s in scenes)
                segments.append({"type": "text", "text": f"together the pictures show {total} shapes."})
                kinds["pictures"] += 1
            for j, scene in enumerate(scenes):
                sample[f"{j}.png"] = png_bytes(render_scene(scene))
            corpus.add(*(s["text"] for s in segments if s["type"] == "text"))
            sample["json"] = {"segments": segments, "scenes": [s.to_dict() for s in scenes]}
            num_images[k] += 1
            yield sample

    shards = out.write_shards("pretrain/interleaved", samples(), per_shard)
    return {"samples": n, "shards": shards, "images_per_doc": {str(k): v for k, v in sorted(num_images.items())},
            "pages": dict(sorted(kinds.items()))}


# ---- instruction data -------------------------------------------------------------------


# Share of single-image SFT images that carry an existence drill instead of 1-3 mixed
# questions, and the drill's number of probes. Yes/no existence is the one question kind that
# the demo's tiny LM did not learn from the mixture alone: it answered near chance (mostly
# "no"), even on its training images. With drills it answers the kind and colour probes
# ("Is there a circle?", "Is there a red shape?") right, 21 or more of 22-24 held-out in six
# of seven runs against 10-16 in eight runs without; the probes naming colour and kind
# together ("a red circle") were still near chance after 600 SFT steps. A quarter of the
# images as drills cost locating and position more than an eighth did (README, the demo
# section).
EXISTENCE_DRILL_SHARE = 0.12
EXISTENCE_DRILL_PROBES = 4


def write_sft_single(out: OutputDir, cfg: WorldConfig, rng: random.Random, n: int, corpus: Corpus,
                     drill_share: float = EXISTENCE_DRILL_SHARE, drill_probes: int = EXISTENCE_DRILL_PROBES) -> dict:
    """`n` images, each with 1-3 questions of different kinds (drawn uniformly, with an
    occasional "describe the image" turn) or, for a `drill_share` of them, an existence drill:
    `drill_probes` yes/no existence questions, half "yes" (`existence_drill`)."""
    rows, kinds = [], Counter()
    pool = list(QUESTION_KINDS) + ["describe"]
    drills = 0
    for i in range(n):
        want = rng.sample(pool, rng.randint(1, 3))
        scene = scene_for_kinds(rng, cfg, want)
        if rng.random() < drill_share:
            qas = existence_drill(scene, cfg, rng, drill_probes)
            drills += 1
        else:
            qas = ask_many(rng, cfg, scene, want)
        qas = qas or [describe(scene, rng)]
        kinds.update(q.kind for q in qas)
        corpus.add(*(t for q in qas for t in (q.question, q.answer)))
        image = _save(out, "sft", f"single-{i:06d}", scene)
        rows.append({"id": f"single-{i:06d}", "image": image, "conversations": llava_conversation(qas, 1)})
    out.write_json("sft/single.json", rows)
    return {"samples": n, "turns": sum(kinds.values()), "existence_drills": drills, "kinds": dict(sorted(kinds.items()))}


def write_sft_multi(out: OutputDir, cfg: WorldConfig, rng: random.Random, n: int, corpus: Corpus) -> dict:
    rows, kinds = [], Counter()
    for i in range(n):
        m = ask_multi(MULTI_KINDS[i % len(MULTI_KINDS)], cfg, rng)
        images = [_save(out, "sft", f"multi-{i:06d}-{j}", s) for j, s in enumerate(m.scenes)]
        qa = QA(m.kind, m.question, m.answer)
        corpus.add(m.question, m.answer)
        kinds[m.kind] += 1
        rows.append({"id": f"multi-{i:06d}", "image": images, "conversations": llava_conversation([qa], len(images))})
    out.write_json("sft/multi.json", rows)
    return {"samples": n, "kinds": dict(sorted(kinds.items()))}


def _wrong(rng: random.Random, options, right: str, prefer=()) -> str:
    preferred = [p for p in prefer if p != right]
    if preferred and rng.random() < 0.7:
        return rng.choice(preferred)
    return rng.choice([o for o in options if o != right])


def hallucinated_caption(scene: Scene, cfg: WorldConfig, rng: random.Random) -> str:
    """The scene's description with one made-up object added or one colour changed."""
    free = [c for c in range(cfg.num_cells) if not scene.object_at(cfg.cell_names[c]) and not scene.word_at(cfg.cell_names[c])]
    objects = list(scene.objects)
    if free and rng.random() < 0.5:
        objects.append(make_object(cfg, rng.choice(cfg.shapes), rng.choice(cfg.colours), rng.choice(cfg.sizes), rng.choice(free)))
    else:
        j = rng.randrange(len(objects))
        o = objects[j]
        objects[j] = type(o)(o.kind, _wrong(rng, cfg.colours, o.colour), o.size, o.cell, o.position, o.bbox)
    fake = Scene(scene.width, scene.height, scene.grid, scene.background, tuple(sorted(objects, key=lambda o: o.cell)), scene.words)
    return plain_caption(fake, 0)


def dpo_pair(scene: Scene, cfg: WorldConfig, rng: random.Random, kind: str) -> tuple[str, str, str]:
    """(question, chosen, rejected); rejected is a plausible hallucination."""
    if kind == "describe":
        qa = describe(scene, rng)
        return qa.question, qa.answer, hallucinated_caption(scene, cfg, rng)
    qa = ask(kind, scene, cfg, rng)
    if qa is None:
        return dpo_pair(scene, cfg, rng, "describe")
    if kind == "existence":
        return qa.question, qa.answer, "no" if qa.answer == "yes" else "yes"
    if kind == "colour":
        return qa.question, qa.answer, _wrong(rng, cfg.colours, qa.answer, [o.colour for o in scene.objects])
    if kind == "shape":
        return qa.question, qa.answer, _wrong(rng, cfg.shapes, qa.answer, [o.kind for o in scene.objects])
    if kind == "count":
        n = int(qa.answer)
        return qa.question, qa.answer, str(n + 1 if n == 0 or rng.random() < 0.5 else n - 1)
    raise ValueError(f"no DPO pairs for question kind {kind!r}")


DPO_KINDS = ("existence", "existence", "colour", "shape", "count", "describe")


def write_dpo(out: OutputDir, cfg: WorldConfig, rng: random.Random, n: int, corpus: Corpus) -> dict:
    rows, kinds = [], Counter()
    for i in range(n):
        kind = DPO_KINDS[i % len(DPO_KINDS)]
        scene = sample_scene(rng, cfg)
        q, chosen, rejected = dpo_pair(scene, cfg, rng, kind)
        corpus.add(q, chosen, rejected)
        kinds[kind] += 1
        image = _save(out, "dpo", f"pair-{i:06d}", scene)
        rows.append({"id": f"pair-{i:06d}", "image": image, "prompt": "<image>\n" + q, "chosen": chosen, "rejected": rejected, "kind": kind})
    out.write_jsonl("dpo/pairs.jsonl", rows)
    return {"samples": n, "kinds": dict(sorted(kinds.items()))}


def safety_item(scene: Scene, cfg: WorldConfig, rng: random.Random, unsafe: bool) -> QA:
    if unsafe:
        return QA("unsafe", unsafe_request(scene, rng), REFUSAL)
    kind = rng.choice(QUESTION_KINDS)
    return ask(kind, scene, cfg, rng) or describe(scene, rng)


def write_safety_train(out: OutputDir, cfg: WorldConfig, rng: random.Random, n: int, corpus: Corpus) -> dict:
    """Half refusals of unsafe requests, half ordinary questions answered as usual, so that
    safety tuning learns when to refuse, not to refuse everything."""
    rows, unsafe_count = [], 0
    for i in range(n):
        unsafe = i % 2 == 0
        scene = sample_scene(rng, cfg)
        qa = safety_item(scene, cfg, rng, unsafe)
        unsafe_count += unsafe
        corpus.add(qa.question, qa.answer)
        image = _save(out, "safety", f"safety-{i:06d}", scene)
        rows.append({"id": f"safety-{i:06d}", "image": image, "conversations": llava_conversation([qa], 1)})
    out.write_json("safety/train.json", rows)
    return {"samples": n, "unsafe": unsafe_count, "ordinary": n - unsafe_count}

