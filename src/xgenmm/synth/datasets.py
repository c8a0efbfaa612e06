"""Training data of every kind the recipe consumes, in the real formats:

- `pretrain/captions-*.tar`: WebDataset caption shards (`png` + `txt` + `json` metadata),
  plain, OCR-style and grounding-style captions;
- `pretrain/interleaved-*.tar`: WebDataset interleaved documents (`json` = {"segments": [...]},
  images as members `0.png`, `1.png`, ...);
- `sft/single.json`, `sft/single_conversations.json`, `sft/multi.json`: LLaVA JSON conversations with `<image>` tags;
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


# The question kinds that pick one object out of the scene by what it is or where it is.
SELECTION_KINDS = frozenset({"colour", "shape", "position", "existence", "locating"})


def scene_for_kinds(rng: random.Random, cfg: WorldConfig, kinds: list[str], full_share: float = 0.0) -> Scene:
    """A scene on which every kind in `kinds` can be asked (a word for reading). With
    probability `full_share`, when a kind in `kinds` has to pick one object out of several
    (SELECTION_KINDS) and none counts, the scene holds the preset's most objects."""
    num_words = rng.randint(1, cfg.max_words) if "reading" in kinds else None
    # a count question keeps the preset's own draw: asked of full scenes it teaches a prior
    full = "count" not in kinds and bool(SELECTION_KINDS.intersection(kinds)) and rng.random() < full_share
    return sample_scene(rng, cfg, num_objects=cfg.max_objects if full else None, num_words=num_words)


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


# Share of single-image SFT images that carry an existence drill instead of mixed questions,
# and the drill's number of probes. Yes/no existence is the one question kind that the demo's
# tiny LM did not learn from the mixture alone: it answered near chance (mostly "no"), even
# on its training images. With drills it answers the kind and colour probes ("Is there a
# circle?", "Is there a red shape?") right, 21 or more of 22-24 held-out in six of seven runs
# against 10-16 in eight runs without; the probes naming colour and kind together ("a red
# circle") were still near chance after 600 SFT steps. A quarter of the images as drills cost
# locating and position more than an eighth did (docs/demo-recipe.md).
EXISTENCE_DRILL_SHARE = 0.12
EXISTENCE_DRILL_PROBES = 4

# How single-image SFT spends its turns. The tiny LM learns counting and reading within a few
# hundred steps; what it learns last is selection: its wrong colour and position answers were
# the scene's *other* object's (all 21 wrong colours, 18 of 20 wrong positions, over two
# seeds). So selection kinds are asked more often (weights below, drawn without replacement),
# every image gets two or three questions instead of one to three, and three quarters of the
# images asked a selection question (and no count) hold the preset's most objects: with one
# object there is nothing to select. Measured from the same base models, 1,000 steps of 32
# rows, on the previous held-out questions, seed 0 / seed 1: VQA 0.88 -> 0.90 / 0.85 -> 0.85,
# position 0.75 -> 1.00 / 0.75 -> 0.88, colour 0.78 -> 0.80 / 0.70 -> 0.75; existence fell
# (0.78 -> 0.65 / 0.88 -> 0.78: 20 of its 23 errors on the probes that name colour and kind
# together). The held-out sets keep their distribution; their scenes moved, as
# `scene_for_kinds` takes one more draw for a selecting question.
SFT_KIND_WEIGHTS = {"colour": 2.0, "shape": 1.5, "position": 2.0, "existence": 1.5, "locating": 1.5,
                    "count": 1.0, "reading": 0.5, "describe": 1.0}
SFT_QUESTIONS_PER_IMAGE = (2, 3)
SFT_FULL_SCENE_SHARE = 0.75
# Each of an image's questions is a sample of its own in `sft/single.json` (one image, one
# question, one answer), which single-image SFT trains on. In a conversation, later answers
# are often words of earlier turns (in the world's conversations, 288 of 534 later colour
# answers), a shortcut the tiny LM takes instead of reading the image; every held-out question
# is a first turn. Measured from the same base models, 1,600 steps, 64 one-question rows
# against 24 conversations (about a quarter more tokens a step): VQA 0.895 -> 0.930 for seed 1
# (colour 0.66 -> 0.88), docs/demo-recipe.md for the other seeds. The same questions as
# conversations, an image's questions the turns of one, are `sft/single_conversations.json`:
# the single-image share of multi-image SFT's mix, where a sample holds two to four questions
# for the step's one (docs/demo-recipe.md, "Multi-image SFT and DPO").


def weighted_kinds(rng: random.Random, weights: dict[str, float], k: int) -> list[str]:
    """`k` different kinds drawn by weight, without replacement."""
    pool, out = list(weights), []
    while pool and len(out) < k:
        pick = rng.choices(pool, [weights[p] for p in pool])[0]
        out.append(pick)
        pool.remove(pick)
    return out


def write_sft_single(out: OutputDir, cfg: WorldConfig, rng: random.Random, n: int, corpus: Corpus,
                     drill_share: float = EXISTENCE_DRILL_SHARE, drill_probes: int = EXISTENCE_DRILL_PROBES,
                     kind_weights: dict[str, float] | None = None,
                     questions_per_image: tuple[int, int] = SFT_QUESTIONS_PER_IMAGE,
                     full_scene_share: float = SFT_FULL_SCENE_SHARE) -> dict:
    """`n` images, each with `questions_per_image` (min, max) questions of different kinds
    drawn by `kind_weights` (default SFT_KIND_WEIGHTS: the question kinds and "describe the
    image") or, for a `drill_share` of them, an existence drill: `drill_probes` yes/no
    existence questions, half "yes" (`existence_drill`). A question kind that cannot be asked
    of its scene is left out (a "describe" turn when none can). Writes them twice: in `sft/single.json` each question is
    a one-turn conversation of its own (`single-IIIIII-qJ`, sharing the image file), in
    `sft/single_conversations.json` an image's questions are the turns of one conversation
    (`single-IIIIII`)."""
    weights = dict(SFT_KIND_WEIGHTS if kind_weights is None else kind_weights)
    unknown = set(weights) - set(QUESTION_KINDS) - {"describe"}
    if unknown or not any(w > 0 for w in weights.values()):
        raise ValueError(f"write_sft_single: kind_weights {weights} must give positive weight to some of "
                         f"{list(QUESTION_KINDS) + ['describe']} and name nothing else")
    weights = {k: w for k, w in weights.items() if w > 0}
    lo, hi = questions_per_image
    if not 1 <= lo <= hi:
        raise ValueError(f"write_sft_single: questions_per_image {questions_per_image} must be (min, max) with 1 <= min <= max")
    rows, conversations, kinds = [], [], Counter()
    drills = 0
    for i in range(n):
        want = weighted_kinds(rng, weights, rng.randint(lo, hi))
        scene = scene_for_kinds(rng, cfg, want, full_scene_share)
        if rng.random() < drill_share:
            qas = existence_drill(scene, cfg, rng, drill_probes)
            drills += 1
        else:
            qas = ask_many(rng, cfg, scene, want)
        qas = qas or [describe(scene, rng)]
        kinds.update(q.kind for q in qas)
        corpus.add(*(t for q in qas for t in (q.question, q.answer)))
        image = _save(out, "sft", f"single-{i:06d}", scene)
        rows += [{"id": f"single-{i:06d}-q{j}", "image": image, "conversations": llava_conversation([qa], 1)}
                 for j, qa in enumerate(qas)]
        conversations.append({"id": f"single-{i:06d}", "image": image, "conversations": llava_conversation(qas, 1)})
    out.write_json("sft/single.json", rows)
    out.write_json("sft/single_conversations.json", conversations)
    return {"samples": len(rows), "conversations": len(conversations), "images": n, "turns": sum(kinds.values()),
            "existence_drills": drills, "kinds": dict(sorted(kinds.items()))}


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

