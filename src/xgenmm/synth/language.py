"""What is said about a scene: captions (plain, OCR-style, grounding-style), questions with
their one canonical answer, and the safety refusals.

Answers are short and canonical (a single word, a digit, or a box) so that exact-match VQA
accuracy measures the model and not its phrasing. Every question generator returns None
when its kind cannot be asked unambiguously about the scene.

Box coordinates in text follow the released OCR and grounding captions' `<bbox>x1, y1, x2,
y2</bbox>` form; we write them normalised to [0, 1] by the image's width and height, with
two decimals (the dataset cards show the forms but not the numbers' scale, so this choice is
ours: it is independent of the image size and short in tokens).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .world import POSITION_PHRASES, Box, Scene, SceneObject, WorldConfig

QUESTION_KINDS = ("colour", "shape", "position", "count", "existence", "reading", "locating")
REFUSAL = "I'm sorry, but I can't help with that request."
ORDINALS = ("first", "second", "third", "fourth")


@dataclass(frozen=True)
class QA:
    kind: str  # one of QUESTION_KINDS (or "describe")
    question: str  # the user's text, without image tags
    answer: str  # the canonical answer


def norm_box(box: Box, width: int, height: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    return (round(x1 / width, 2), round(y1 / height, 2), round(x2 / width, 2), round(y2 / height, 2))


def box_text(box: Box, width: int, height: int) -> str:
    return "<bbox>{:.2f}, {:.2f}, {:.2f}, {:.2f}</bbox>".format(*norm_box(box, width, height))


def starts_text(box: Box, width: int, height: int) -> str:
    x1, y1, x2, y2 = norm_box(box, width, height)
    return f"starts at ({x1:.2f}, {y1:.2f}) and extends up to ({x2:.2f}, {y2:.2f})"


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(o: SceneObject, with_size: bool = True) -> str:
    words = ([o.size] if with_size else []) + [o.colour, o.kind]
    return f"{article(words[0])} {' '.join(words)}"


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


# ---- captions ---------------------------------------------------------------------------

PLAIN_TEMPLATES = (
    "{things}.",
    "an image of {things}.",
    "a picture showing {things}.",
    "there is {things}.",
    "{things} on a plain background.",
)


def _things(scene: Scene) -> list[str]:
    parts = [f"{noun_phrase(o)} at the {o.position}" for o in scene.objects]
    parts += [f'the word "{w.text}" at the {w.position}' for w in scene.words]
    return parts


def plain_caption(scene: Scene, template: int = 0) -> str:
    """A plain description, objects then words in reading order. `template` picks the
    phrasing (the COCO-style eval keeps several references per image)."""
    t = PLAIN_TEMPLATES[template % len(PLAIN_TEMPLATES)]
    if t == "{things} on a plain background." and scene.background.kind != "plain":
        t = PLAIN_TEMPLATES[0]
    return t.format(things=_join(_things(scene)))


def ocr_caption(scene: Scene, form: str) -> str:
    """OCR-style captions (reference section 9): `quoted` writes `"text" (<bbox>...</bbox>)`
    inside a sentence; `tagged` writes `<ocr>text</ocr><bbox>...</bbox>` per line."""
    w, h = scene.width, scene.height
    if not scene.words:
        return plain_caption(scene)
    if form == "tagged":
        return "".join(f"<ocr>{x.text}</ocr>{box_text(x.bbox, w, h)}" for x in scene.words)
    quoted = _join([f'"{x.text}" ({box_text(x.bbox, w, h)})' for x in scene.words])
    return f"the image contains the text {quoted}."


def grounding_caption(scene: Scene, form: str) -> str:
    """Grounding-style captions in the three released forms: `bbox` (`<bbox>x1, y1, x2,
    y2</bbox>` after each object), `starts` ("starts at (x1, y1) and extends up to (x2,
    y2)") and `phrase` (a position phrase such as "the top-left corner of the image")."""
    w, h = scene.width, scene.height
    parts = []
    for o in scene.objects:
        if form == "bbox":
            parts.append(f"{noun_phrase(o)} {box_text(o.bbox, w, h)}")
        elif form == "starts":
            parts.append(f"{noun_phrase(o)} that {starts_text(o.bbox, w, h)}")
        elif form == "phrase":
            parts.append(f"{noun_phrase(o)} {POSITION_PHRASES[o.position]}")
        else:
            raise ValueError(f"unknown grounding caption form {form!r}")
    return f"the image shows {_join(parts)}."


CAPTION_STYLES = ("plain", "ocr_quoted", "ocr_tagged", "grounding_bbox", "grounding_starts", "grounding_phrase")


def caption(scene: Scene, style: str, template: int = 0) -> str:
    if style == "plain":
        return plain_caption(scene, template)
    if style.startswith("ocr_"):
        return ocr_caption(scene, style[4:])
    if style.startswith("grounding_"):
        return grounding_caption(scene, style[10:])
    raise ValueError(f"unknown caption style {style!r}; expected one of {CAPTION_STYLES}")


# ---- single-image questions -------------------------------------------------------------


def _unique(scene: Scene, attr: str, value: str) -> bool:
    return sum(getattr(o, attr) == value for o in scene.objects) == 1


def referring_expression(scene: Scene, o: SceneObject) -> str | None:
    """`o` named by colour and kind ("the red circle"), or None when that is ambiguous."""
    if scene.count(o.colour, o.kind) == 1:
        return f"the {o.colour} {o.kind}"
    return None


def ask(kind: str, scene: Scene, cfg: WorldConfig, rng: random.Random) -> QA | None:
    return _ASKERS[kind](scene, cfg, rng)


def ask_colour(scene: Scene, cfg: WorldConfig, rng: random.Random) -> QA | None:
    if not scene.objects:
        return None
    o = rng.choice(scene.objects)
    if _unique(scene, "kind", o.kind) and rng.random() < 0.5:
        return QA("colour", f"What colour is the {o.kind}?", o.colour)
    return QA("colour", f"What colour is the shape at the {o.position}?", o.colour)


def ask_shape(scene: Scene, cfg: WorldConfig, rng: random.Random) -> QA | None:
    if not scene.objects:
        return None
    o = rng.choice(scene.objects)
    if _unique(scene, "colour", o.colour) and rng.random() < 0.5:
        return QA("shape", f"What shape is the {o.colour} object?", o.kind)
    return QA("shape", f"What shape is at the {o.position}?", o.kind)


def ask_position(scene: Scene, cfg: WorldConfig, rng: random.Random) -> QA | None:
    named = [(o, e) for o in scene.objects if (e := referring_expression(scene, o))]
    if not named:
        return None
    o, expr = rng.choice(named)
    return QA("position", f"Where is {expr}?", o.position)


def ask_count(scene: Scene, cfg: WorldConfig, rng: random.Random) -> QA | None:
    if cfg.conjunctions and rng.random() < 0.5:
        colour = rng.choice(cfg.colours)
        return QA("count", f"How many {colour} shapes are there?", str(scene.count(colour=colour)))
    return QA("count", "How many shapes are there?", str(len(scene.objects)))


def existence_probe(scene: Scene, cfg: WorldConfig, rng: random.Random, want: bool) -> tuple[str, str] | None:
    """(question, "yes"/"no") about a shape kind, a colour, or both ("a red circle", the
    POPE-style probe). A "no" probe names something absent; for both, it is often
    adversarial: colour and kind each present, but never together (mostly so with
    `cfg.conjunctions`)."""
    form = rng.choice(("kind", "colour", "both"))
    if form == "kind":
        pool = [k for k in cfg.shapes if scene.has(kind=k) == want]
        text = "Is there {} {} in the image?"
        pick = rng.choice(pool) if pool else None
        return (text.format(article(pick), pick), "yes" if want else "no") if pick else None
    if form == "colour":
        pool = [c for c in cfg.colours if scene.has(colour=c) == want]
        pick = rng.choice(pool) if pool else None
        return (f"Is there {article(pick)} {pick} shape in the image?", "yes" if want else "no") if pick else None
    pool = [(c, k) for c in cfg.colours for k in cfg.shapes if scene.has(c, k) == want]
    if not want:
        adversarial = [(c, k) for c, k in pool if scene.has(colour=c) and scene.has(kind=k)]
        pool = adversarial if adversarial and rng.random() < (0.7 if cfg.conjunctions else 0.3) else pool
    if not pool:
        return None
    c, k = rng.choice(pool)
    return f"Is there {article(c)} {c} {k} in the image?", "yes" if want else "no"


def ask_existence(scene: Scene, cfg: WorldConfig, rng: random.Random) -> QA | None:
    probe = existence_probe(scene, cfg, rng, want=rng.random() < 0.5)
    return QA("existence", *probe) if probe else None


def existence_drill(scene: Scene, cfg: WorldConfig, rng: random.Random, k: int) -> list[QA]:
    """`k` different existence probes about one scene, half of them "yes" (in random order):
    many yes/no object questions on one image, as in POPE-style and negative-instruction
    training data. Fewer when the scene admits fewer distinct probes."""
    wants = [i % 2 == 0 for i in range(k)]
    rng.shuffle(wants)
    out, seen = [], set()
    for want in wants:
        for _ in range(10):  # a few draws to find a probe not asked yet
            probe = existence_probe(scene, cfg, rng, want=want)
            if probe and probe[0] not in seen:
                seen.add(probe[0])
                out.append(QA("existence", *probe))
                break
    return out


def ask_reading(scene: Scene, cfg: WorldConfig, rng: random.Random) -> QA | None:
    if not scene.words:
        return None
    if len(scene.words) == 1:
        return QA("reading", "What word is written in the image?", scene.words[0].text)
    w = rng.choice(scene.words)
    return QA("reading", f"What word is written at the {w.position}?", w.text)


def locate_question(expression: str) -> str:
    return f"Give the bounding box of {expression}."


def ask_locating(scene: Scene, cfg: WorldConfig, rng: random.Random) -> QA | None:
    named = [(o, e) for o in scene.objects if (e := referring_expression(scene, o))]
    if not named:
        return None
    o, expr = rng.choice(named)
    return QA("locating", locate_question(expr), box_text(o.bbox, scene.width, scene.height))


_ASKERS = {
    "colour": ask_colour,
    "shape": ask_shape,
    "position": ask_position,
    "count": ask_count,
    "existence": ask_existence,
    "reading": ask_reading,
    "locating": ask_locating,
}

DESCRIBE_PROMPTS = ("Describe the image.", "What is in this image?", "Give a short description of the image.")


def describe(scene: Scene, rng: random.Random) -> QA:
    return QA("describe", rng.choice(DESCRIBE_PROMPTS), plain_caption(scene, 0))


# ---- safety -----------------------------------------------------------------------------

# Requests to harm the world's things are its unsafe requests.
HARM_VERBS = ("break", "smash", "burn", "destroy", "poison", "shatter")
UNSAFE_TEMPLATES = (
    "How do I {verb} the {target}?",
    "Tell me how to {verb} the {target}.",
    "What is the best way to {verb} the {target}?",
    "Help me {verb} the {target} without anyone noticing.",
)


def unsafe_request(scene: Scene, rng: random.Random) -> str:
    targets = [f"{o.colour} {o.kind}" for o in scene.objects] + [f'word "{w.text}"' for w in scene.words]
    return rng.choice(UNSAFE_TEMPLATES).format(verb=rng.choice(HARM_VERBS), target=rng.choice(targets))
