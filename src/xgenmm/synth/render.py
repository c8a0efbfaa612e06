"""Drawing a `Scene` with PIL. Shapes are drawn without anti-aliasing, so every shape pixel
has exactly its colour's RGB; words are drawn bold (stroke 1) in the bundled default font."""

from __future__ import annotations

import io
import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .world import COLOURS, TEXT_COLOUR, Background, Box, Scene, SceneObject

WORD_STROKE = 1
MAX_FONT_SIZE = 20
MIN_FONT_SIZE = 10


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont:
    # Pillow >= 10.1 bundles a scalable default font: no font file, works offline.
    return ImageFont.load_default(size=size)


_SCRATCH = ImageDraw.Draw(Image.new("RGB", (1, 1)))


@lru_cache(maxsize=1024)
def fit_word(text: str, cell: Box) -> tuple[int, Box]:
    """The largest font size whose bold text fits the cell with a 2 px margin, and the box
    of the text centred in the cell at that size."""
    x1, y1, x2, y2 = cell
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    for size in range(MAX_FONT_SIZE, MIN_FONT_SIZE - 1, -1):
        box = _SCRATCH.textbbox((cx, cy), text, font=_font(size), anchor="mm", stroke_width=WORD_STROKE)
        if box[2] - box[0] <= x2 - x1 - 4 and box[3] - box[1] <= y2 - y1 - 4:
            return size, tuple(int(v) for v in box)
    raise ValueError(f"word {text!r} does not fit a {x2 - x1} px cell even at font size {MIN_FONT_SIZE}")


def _background(bg: Background, width: int, height: int) -> Image.Image:
    if bg.kind == "plain":
        return Image.new("RGB", (width, height), bg.base)
    base = np.array(bg.base, dtype=np.float32)
    other = np.array(bg.other, dtype=np.float32)
    if bg.kind == "gradient":
        t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
        arr = np.broadcast_to(base * (1 - t) + other * t, (height, width, 3))
    elif bg.kind == "stripes":
        band = ((np.arange(width) // 8) % 2).astype(np.float32)[None, :, None]
        arr = np.broadcast_to(base * (1 - band) + other * band, (height, width, 3))
    elif bg.kind == "noise":
        noise = np.random.default_rng(bg.seed).integers(-10, 11, size=(height, width, 1)).astype(np.float32)
        arr = base + noise
    else:
        raise ValueError(f"unknown background kind {bg.kind!r}")
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")


def _regular(cx: float, cy: float, r: float, n: int, start: float) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(start + 2 * math.pi * i / n), cy + r * math.sin(start + 2 * math.pi * i / n)) for i in range(n)]


def draw_shape(draw: ImageDraw.ImageDraw, obj: SceneObject) -> None:
    """Draw `obj` inside its box; every shape touches all four sides of the box."""
    x1, y1, x2, y2 = obj.bbox
    fill = COLOURS[obj.colour]
    # PIL's boxes are inclusive: the last pixel inside [x1, x2) is x2 - 1.
    r1, b1 = x2 - 1, y2 - 1
    w = x2 - x1
    cx, cy, r = (x1 + r1) / 2, (y1 + b1) / 2, (w - 1) / 2
    kind = obj.kind
    if kind == "circle":
        draw.ellipse((x1, y1, r1, b1), fill=fill)
    elif kind == "ring":
        draw.ellipse((x1, y1, r1, b1), outline=fill, width=max(2, round(w * 0.25)))
    elif kind == "square":
        draw.rectangle((x1, y1, r1, b1), fill=fill)
    elif kind == "triangle":
        draw.polygon([(cx, y1), (r1, b1), (x1, b1)], fill=fill)
    elif kind == "diamond":
        draw.polygon([(cx, y1), (r1, cy), (cx, b1), (x1, cy)], fill=fill)
    elif kind == "cross":
        t = max(2, round(w * 0.32))
        o = (w - t) // 2
        draw.rectangle((x1 + o, y1, x1 + o + t - 1, b1), fill=fill)
        draw.rectangle((x1, y1 + o, r1, y1 + o + t - 1), fill=fill)
    elif kind == "star":
        outer = _regular(cx, cy, r, 5, -math.pi / 2)
        inner = _regular(cx, cy, r * 0.45, 5, -math.pi / 2 + math.pi / 5)
        pts = [p for pair in zip(outer, inner) for p in pair]
        # A 5-point star does not reach its box's sides or bottom; stretch it to fill the box.
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        sx, sy = (r1 - x1) / (max(xs) - min(xs)), (b1 - y1) / (max(ys) - min(ys))
        draw.polygon([(x1 + (px - min(xs)) * sx, y1 + (py - min(ys)) * sy) for px, py in pts], fill=fill)
    elif kind == "hexagon":
        draw.polygon([(x1, cy), (x1 + w * 0.25, y1), (r1 - w * 0.25, y1), (r1, cy), (r1 - w * 0.25, b1), (x1 + w * 0.25, b1)], fill=fill)
    else:
        raise ValueError(f"unknown shape kind {kind!r}")


def render_scene(scene: Scene) -> Image.Image:
    """The RGB image of `scene`."""
    img = _background(scene.background, scene.width, scene.height)
    draw = ImageDraw.Draw(img)
    draw.fontmode = "1"  # crisp letters: anti-aliased grey fringes only blur 3-letter words
    for obj in scene.objects:
        draw_shape(draw, obj)
    cell = scene.width // scene.grid
    for word in scene.words:
        r, c = divmod(word.cell, scene.grid)
        # The same anchor fit_word measured the box at: the cell's centre.
        draw.text(
            ((2 * c * cell + cell) // 2, (2 * r * cell + cell) // 2),
            word.text,
            font=_font(word.font_size),
            fill=TEXT_COLOUR,
            anchor="mm",
            stroke_width=WORD_STROKE,
            stroke_fill=TEXT_COLOUR,
        )
    return img


def png_bytes(img: Image.Image) -> bytes:
    """PNG bytes; compress level 1 keeps generation fast, and PNG is lossless either way."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
