"""Referring-expression grounding: box IoU, reading a box from generated text, accuracy at
IoU >= 0.5."""

from __future__ import annotations

import re
from collections.abc import Sequence

Box = Sequence[float]

_NUMBER = r"-?\d+(?:\.\d+)?"
# "<bbox>x1, y1, x2, y2</bbox>" (the release's grounding captions), "[x1, y1, x2, y2]",
# "(x1, y1, x2, y2)" or four bare numbers.
_BOX = re.compile(rf"({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})")
# "starts at (x1, y1) and extends up to (x2, y2)" (BLIP3-GROUNDING's second form).
_EXTENDS = re.compile(rf"\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)\D+\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)")


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two [x1, y1, x2, y2] boxes in continuous coordinates
    (no +1 pixel convention); 0 for degenerate boxes."""
    ax1, ay1, ax2, ay2 = map(float, a)
    bx1, by1, bx2, by2 = map(float, b)
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = max(0.0, ax2 - ax1) * max(0.0, ay2 - ay1) + max(0.0, bx2 - bx1) * max(0.0, by2 - by1) - inter
    return inter / union if union > 0 else 0.0


def parse_box(text: str, width: float | None = None, height: float | None = None) -> list[float] | None:
    """The first box written in `text`, in pixels, or None. Coordinates all within [0, 1]
    are read as fractions of the image and scaled by `width`/`height` when given."""
    m = _EXTENDS.search(text) or _BOX.search(text)
    if not m:
        return None
    x1, y1, x2, y2 = (float(v) for v in m.groups())
    if width and height and max(x1, y1, x2, y2) <= 1.0:
        x1, x2, y1, y2 = x1 * width, x2 * width, y1 * height, y2 * height
    return [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]


def grounding_accuracy(predicted: Sequence[Box | None], targets: Sequence[Box], threshold: float = 0.5) -> float:
    """Fraction of predictions whose IoU with the target is >= `threshold`; a missing
    (unparseable) prediction is wrong."""
    if len(predicted) != len(targets):
        raise ValueError("grounding_accuracy: predictions and targets differ in length")
    if not targets:
        return 0.0
    hits = sum(p is not None and box_iou(p, t) >= threshold for p, t in zip(predicted, targets))
    return hits / len(targets)
