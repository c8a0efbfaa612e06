"""The synthetic world's facts: its vocabulary, the difficulty presets and the `Scene`.

A scene is a canvas cut into a coarse grid of cells; each cell holds at most one thing,
either a shape or a short word, centred in the cell. Cells are meant to line up with the
vision tower's patches (a 96 px canvas, a 3x3 grid and patch 16 give each cell 2x2 whole
patches), so "what is at the top-left" is a question about a fixed set of patch tokens.
Every fact of a scene (kind, colour, size, cell, pixel box of every object; text and box of
every word) is decided here, before anything is drawn, so the data built from a scene is
right by construction.

Design for learnability by a ~1-5M parameter model: few classes, far apart. Colours are
saturated and far from each other and from the grey backgrounds; shapes fill most of a
cell; words are three letters from a small list, drawn bold and as large as the cell allows.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

# Saturated colours far apart in RGB and far from the low-saturation grey backgrounds.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (20, 160, 40),
    "blue": (30, 70, 225),
    "yellow": (245, 215, 0),
    "purple": (150, 40, 190),
    "cyan": (0, 200, 210),
    "orange": (250, 130, 0),
    "pink": (250, 120, 190),
}
SHAPES = ("circle", "square", "triangle", "cross", "star", "diamond", "hexagon", "ring")
# Short words with distinct first letters, so that even a blurry first glyph tells them apart.
WORDS = ("cat", "dog", "sun", "key", "hat", "box", "pen", "map", "cup", "bus", "egg", "fox")
# Side of the object's square box as a fraction of the cell side.
SIZE_FRACTIONS = {"large": 0.875, "small": 0.5625}
TEXT_COLOUR = (15, 15, 15)
BACKGROUNDS = ("plain", "gradient", "stripes", "noise")

# Cell names in reading order; the only grids with natural names are 2x2 and 3x3.
CELL_NAMES = {
    2: ("top-left", "top-right", "bottom-left", "bottom-right"),
    3: ("top-left", "top", "top-right", "left", "center", "right", "bottom-left", "bottom", "bottom-right"),
}
# Position phrases of the grounding captions ("top-left corner of the image" form), with
# the preposition each takes.
POSITION_PHRASES = {
    "top-left": "in the top-left corner of the image",
    "top": "at the top of the image",
    "top-right": "in the top-right corner of the image",
    "left": "on the left side of the image",
    "center": "in the center of the image",
    "right": "on the right side of the image",
    "bottom-left": "in the bottom-left corner of the image",
    "bottom": "at the bottom of the image",
    "bottom-right": "in the bottom-right corner of the image",
}


@dataclass(frozen=True)
class WorldConfig:
    """One difficulty preset of the world."""

    name: str  # preset name, recorded in the manifest
    colours: tuple[str, ...]  # colour names drawn from COLOURS
    shapes: tuple[str, ...]  # shape kinds drawn from SHAPES
    sizes: tuple[str, ...]  # size names drawn from SIZE_FRACTIONS
    words: tuple[str, ...]  # the word vocabulary drawn in scenes
    min_objects: int  # fewest shapes in a scene
    max_objects: int  # most shapes in a scene
    max_words: int  # most words in a scene (each takes a cell)
    word_prob: float  # probability that a scene has at least one word
    unique_colours: bool  # no two shapes of a scene share a colour ("the red shape" is unambiguous)
    conjunctions: bool  # harder probes: "no" existence probes mostly adversarial, counts of one colour
    image_size: int = 96  # canvas side in pixels; image_size / grid should be a multiple of the patch
    grid: int = 3  # cells per side (2 or 3)
    backgrounds: tuple[str, ...] = BACKGROUNDS  # background styles to draw from

    def __post_init__(self) -> None:
        if self.grid not in CELL_NAMES:
            raise ValueError(f"WorldConfig {self.name}: grid must be 2 or 3, got {self.grid}")
        if self.image_size % self.grid:
            raise ValueError(f"WorldConfig {self.name}: image_size {self.image_size} is not a multiple of grid {self.grid}")
        for name, values, known in (
            ("colours", self.colours, COLOURS),
            ("shapes", self.shapes, SHAPES),
            ("sizes", self.sizes, SIZE_FRACTIONS),
            ("words", self.words, WORDS),
            ("backgrounds", self.backgrounds, BACKGROUNDS),
        ):
            unknown = [v for v in values if v not in known]
            if unknown or not values:
                raise ValueError(f"WorldConfig {self.name}: field {name} has unknown or no values {unknown}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(f"WorldConfig {self.name}: need 1 <= min_objects <= max_objects")
        if self.max_objects + self.max_words > self.num_cells:
            raise ValueError(f"WorldConfig {self.name}: {self.max_objects} objects + {self.max_words} words exceed {self.num_cells} cells")
        if self.unique_colours and self.max_objects > len(self.colours):
            raise ValueError(f"WorldConfig {self.name}: unique_colours needs max_objects <= number of colours")

    @property
    def num_cells(self) -> int:
        return self.grid * self.grid

    @property
    def cell_size(self) -> int:
        return self.image_size // self.grid

    @property
    def cell_names(self) -> tuple[str, ...]:
        return CELL_NAMES[self.grid]


PRESETS: dict[str, WorldConfig] = {
    "easy": WorldConfig(
        name="easy",
        colours=("red", "green", "blue", "yellow"),
        shapes=("circle", "square", "triangle", "cross"),
        sizes=("large",),
        words=WORDS[:4],
        min_objects=1,
        max_objects=2,
        max_words=1,
        word_prob=0.5,
        unique_colours=True,
        conjunctions=False,
    ),
    "standard": WorldConfig(
        name="standard",
        colours=("red", "green", "blue", "yellow", "purple", "cyan"),
        shapes=("circle", "square", "triangle", "cross", "star", "diamond"),
        sizes=("large", "small"),
        words=WORDS[:8],
        min_objects=1,
        max_objects=3,
        max_words=1,
        word_prob=0.5,
        unique_colours=True,
        conjunctions=False,
    ),
    "hard": WorldConfig(
        name="hard",
        colours=tuple(COLOURS),
        shapes=SHAPES,
        sizes=("large", "small"),
        words=WORDS,
        min_objects=1,
        max_objects=5,
        max_words=2,
        word_prob=0.6,
        unique_colours=False,
        conjunctions=True,
    ),
}


def get_preset(name: str) -> WorldConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown world preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


Box = tuple[int, int, int, int]  # (x1, y1, x2, y2) in pixels, x1 <= x < x2 (PIL crop convention)


@dataclass(frozen=True)
class SceneObject:
    """A shape. Its box is the square the shape is drawn in (exactly the drawn extent)."""

    kind: str  # shape kind, one of SHAPES
    colour: str  # colour name, one of COLOURS
    size: str  # size name, one of SIZE_FRACTIONS
    cell: int  # cell index in reading order
    position: str  # the cell's name ("top-left", ...)
    bbox: Box  # pixel box


@dataclass(frozen=True)
class SceneWord:
    """A word drawn in dark bold letters; its box is the drawn text's extent."""

    text: str  # the word, lower case, as drawn
    cell: int  # cell index in reading order
    position: str  # the cell's name
    bbox: Box  # pixel box of the drawn text
    font_size: int  # size passed to ImageFont.load_default


@dataclass(frozen=True)
class Background:
    kind: str  # one of BACKGROUNDS
    base: tuple[int, int, int]  # base RGB, light and nearly grey
    other: tuple[int, int, int]  # second RGB of gradients and stripes
    seed: int  # seed of the noise pattern


@dataclass(frozen=True)
class Scene:
    """Everything true about one image."""

    width: int
    height: int
    grid: int
    background: Background
    objects: tuple[SceneObject, ...]
    words: tuple[SceneWord, ...] = field(default=())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Scene:
        return cls(
            width=d["width"],
            height=d["height"],
            grid=d["grid"],
            background=Background(d["background"]["kind"], tuple(d["background"]["base"]), tuple(d["background"]["other"]), d["background"]["seed"]),
            objects=tuple(SceneObject(**{**o, "bbox": tuple(o["bbox"])}) for o in d["objects"]),
            words=tuple(SceneWord(**{**w, "bbox": tuple(w["bbox"])}) for w in d["words"]),
        )

    def object_at(self, position: str) -> SceneObject | None:
        return next((o for o in self.objects if o.position == position), None)

    def word_at(self, position: str) -> SceneWord | None:
        return next((w for w in self.words if w.position == position), None)

    def has(self, colour: str | None = None, kind: str | None = None) -> bool:
        return any((colour is None or o.colour == colour) and (kind is None or o.kind == kind) for o in self.objects)

    def count(self, colour: str | None = None, kind: str | None = None) -> int:
        return sum((colour is None or o.colour == colour) and (kind is None or o.kind == kind) for o in self.objects)


def cell_box(cfg: WorldConfig, cell: int) -> Box:
    s = cfg.cell_size
    r, c = divmod(cell, cfg.grid)
    return (c * s, r * s, (c + 1) * s, (r + 1) * s)


def object_box(cfg: WorldConfig, cell: int, size: str) -> Box:
    """The shape's square, centred in its cell (integer pixels, so boxes are exact)."""
    x0, y0, _, _ = cell_box(cfg, cell)
    side = round(cfg.cell_size * SIZE_FRACTIONS[size])
    off = (cfg.cell_size - side) // 2
    return (x0 + off, y0 + off, x0 + off + side, y0 + off + side)


def make_object(cfg: WorldConfig, kind: str, colour: str, size: str, cell: int) -> SceneObject:
    return SceneObject(kind, colour, size, cell, cfg.cell_names[cell], object_box(cfg, cell, size))


def make_word(cfg: WorldConfig, text: str, cell: int) -> SceneWord:
    from .render import fit_word  # the text's extent depends on the font, which render owns

    font_size, bbox = fit_word(text, cell_box(cfg, cell))
    return SceneWord(text, cell, cfg.cell_names[cell], bbox, font_size)


def sample_background(rng: random.Random, cfg: WorldConfig) -> Background:
    kind = rng.choice(cfg.backgrounds)
    level = rng.randint(150, 215)
    base = tuple(min(255, max(0, level + rng.randint(-8, 8))) for _ in range(3))
    shift = rng.choice((-1, 1)) * rng.randint(12, 24)
    other = tuple(min(255, max(0, v + shift)) for v in base)
    return Background(kind, base, other, rng.randrange(2**31))


def sample_scene(
    rng: random.Random,
    cfg: WorldConfig,
    num_objects: int | None = None,
    num_words: int | None = None,
    objects: list[tuple[str, str, str, int]] | None = None,
) -> Scene:
    """A random scene. `num_objects` / `num_words` force the counts; `objects` forces some
    shapes as (kind, colour, size, cell) tuples, the rest are drawn around them (respecting
    unique_colours)."""
    forced = list(objects or [])
    if num_objects is None:
        num_objects = max(rng.randint(cfg.min_objects, cfg.max_objects), len(forced))
    if num_words is None:
        num_words = rng.randint(1, cfg.max_words) if rng.random() < cfg.word_prob else 0
    if num_objects < len(forced) or num_objects + num_words > cfg.num_cells:
        raise ValueError(f"sample_scene: cannot place {num_objects} objects ({len(forced)} forced) and {num_words} words in {cfg.num_cells} cells")
    used_cells = {f[3] for f in forced}
    used_colours = {f[1] for f in forced}
    if len(used_cells) < len(forced) or (cfg.unique_colours and len(used_colours) < len(forced)):
        raise ValueError(f"sample_scene: forced objects {forced} share a cell or (preset {cfg.name}) a colour")
    free = [c for c in range(cfg.num_cells) if c not in used_cells]
    rng.shuffle(free)
    specs = list(forced)
    for _ in range(num_objects - len(forced)):
        colours = [c for c in cfg.colours if c not in used_colours] if cfg.unique_colours else list(cfg.colours)
        colour = rng.choice(colours)
        used_colours.add(colour)
        specs.append((rng.choice(cfg.shapes), colour, rng.choice(cfg.sizes), free.pop()))
    objs = sorted((make_object(cfg, *s) for s in specs), key=lambda o: o.cell)
    texts = rng.sample(cfg.words, num_words)
    words = sorted((make_word(cfg, t, free.pop()) for t in texts), key=lambda w: w.cell)
    return Scene(cfg.image_size, cfg.image_size, cfg.grid, sample_background(rng, cfg), tuple(objs), tuple(words))
