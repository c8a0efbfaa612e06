"""Multi-image questions: scenes built together so that the question about them has one
answer. Images are referred to by ordinals ("first", "second", "third") in the order their
`<image>` tags appear."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .language import ORDINALS, article
from .world import Scene, WorldConfig, sample_scene

MULTI_KINDS = ("more", "same_colour", "which_image", "total_count")


@dataclass(frozen=True)
class MultiQA:
    kind: str  # one of MULTI_KINDS
    scenes: tuple[Scene, ...]  # the images, in order
    question: str  # the user's text, without image tags
    answer: str  # canonical answer
    options: tuple[str, ...] | None  # closed set of answers, when there is one


def ask_multi(kind: str, cfg: WorldConfig, rng: random.Random) -> MultiQA:
    if kind == "more":
        return _more(cfg, rng)
    if kind == "same_colour":
        return _same_colour(cfg, rng)
    if kind == "which_image":
        return _which_image(cfg, rng)
    if kind == "total_count":
        a, b = sample_scene(rng, cfg), sample_scene(rng, cfg)
        return MultiQA(kind, (a, b), "How many shapes are there in the two images together?", str(len(a.objects) + len(b.objects)), None)
    raise ValueError(f"unknown multi-image question kind {kind!r}; expected one of {MULTI_KINDS}")


def _more(cfg: WorldConfig, rng: random.Random) -> MultiQA:
    if cfg.min_objects == cfg.max_objects:
        raise ValueError(f"preset {cfg.name}: 'more' questions need scenes with different object counts")
    n1, n2 = rng.sample(range(cfg.min_objects, cfg.max_objects + 1), 2)
    scenes = (sample_scene(rng, cfg, num_objects=n1), sample_scene(rng, cfg, num_objects=n2))
    return MultiQA("more", scenes, "Which image has more shapes?", ORDINALS[0 if n1 > n2 else 1], ORDINALS[:2])


def _same_colour(cfg: WorldConfig, rng: random.Random) -> MultiQA:
    cell = rng.randrange(cfg.num_cells)
    c1 = rng.choice(cfg.colours)
    same = rng.random() < 0.5
    c2 = c1 if same else rng.choice([c for c in cfg.colours if c != c1])
    a = sample_scene(rng, cfg, objects=[(rng.choice(cfg.shapes), c1, rng.choice(cfg.sizes), cell)])
    b = sample_scene(rng, cfg, objects=[(rng.choice(cfg.shapes), c2, rng.choice(cfg.sizes), cell)])
    q = f"Is the shape at the {cfg.cell_names[cell]} the same colour in both images?"
    return MultiQA("same_colour", (a, b), q, "yes" if same else "no", ("yes", "no"))


def _which_image(cfg: WorldConfig, rng: random.Random) -> MultiQA:
    n = rng.choice((2, 3))
    target = rng.randrange(n)
    colour, kind = rng.choice(cfg.colours), rng.choice(cfg.shapes)
    scenes = []
    for i in range(n):
        if i == target:
            scenes.append(sample_scene(rng, cfg, objects=[(kind, colour, rng.choice(cfg.sizes), rng.randrange(cfg.num_cells))]))
            continue
        for _ in range(1000):  # rejection: few scenes hold one given (colour, kind)
            s = sample_scene(rng, cfg)
            if not s.has(colour, kind):
                scenes.append(s)
                break
        else:
            raise RuntimeError(f"preset {cfg.name}: no scene without a {colour} {kind} in 1000 draws")
    q = f"In which image is there {article(colour)} {colour} {kind}?"
    return MultiQA("which_image", tuple(scenes), q, ORDINALS[target], ORDINALS[:n])
