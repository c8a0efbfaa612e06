"""Box geometry shared by the OCR and grounding captions: pixel boxes normalised to [0, 1] of
the image's width and height (the released BLIP3 data sets write normalised coordinates, so
a caption does not depend on the resolution the image is later trained at), the coarse
position phrase, IoU and de-duplication."""

from __future__ import annotations

from collections.abc import Sequence

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 (pixels or normalised, by context)


def clip_box(box: Sequence[float], width: int, height: int) -> Box:
    """Clip a pixel box to the image and order its corners."""
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    return (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))


def normalize_box(box: Sequence[float], width: int, height: int, decimals: int = 3) -> Box:
    """Pixel box -> (x1, y1, x2, y2) as fractions of width and height, rounded."""
    if width <= 0 or height <= 0:
        raise ValueError(f"normalize_box: image size must be positive, got {width}x{height}")
    x1, y1, x2, y2 = clip_box(box, width, height)
    return (round(x1 / width, decimals), round(y1 / height, decimals), round(x2 / width, decimals), round(y2 / height, decimals))


def box_corners(box: Sequence[float]) -> list[list[float]]:
    """Axis-aligned box as four corner points, clockwise from the top-left: the quadrilateral
    form of PaddleOCR's (and the released OCR metadata's) `bbox`."""
    x1, y1, x2, y2 = box
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]


def fmt(v: float, decimals: int) -> str:
    return f"{v:.{decimals}f}"


def bbox_tag(box: Box, decimals: int) -> str:
    """`<bbox>x1, y1, x2, y2</bbox>` with normalised coordinates."""
    return "<bbox>" + ", ".join(fmt(v, decimals) for v in box) + "</bbox>"


def extent_phrase(box: Box, decimals: int) -> str:
    """"starts at (x1, y1) and extends up to (x2, y2)"."""
    x1, y1, x2, y2 = (fmt(v, decimals) for v in box)
    return f"starts at ({x1}, {y1}) and extends up to ({x2}, {y2})"


# 3x3 grid over the box centre; each phrase carries its own preposition so that it reads
# after an object name ("a dog in the top-left corner of the image").
_POSITIONS = {
    ("top", "left"): "in the top-left corner of the image",
    ("top", "center"): "at the top of the image",
    ("top", "right"): "in the top-right corner of the image",
    ("middle", "left"): "on the left side of the image",
    ("middle", "center"): "in the center of the image",
    ("middle", "right"): "on the right side of the image",
    ("bottom", "left"): "in the bottom-left corner of the image",
    ("bottom", "center"): "at the bottom of the image",
    ("bottom", "right"): "in the bottom-right corner of the image",
}


def position_phrase(box: Box) -> str:
    """Coarse position of a normalised box: the third of the image (rows and columns) its
    centre falls in, e.g. "in the top-left corner of the image"."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    col = "left" if cx < 1 / 3 else "right" if cx >= 2 / 3 else "center"
    row = "top" if cy < 1 / 3 else "bottom" if cy >= 2 / 3 else "middle"
    return _POSITIONS[(row, col)]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def dedupe(items: Sequence, box_of, score_of, iou_threshold: float) -> list:
    """Greedy non-maximum suppression: keep the highest-scoring item, drop every later one
    overlapping a kept one by more than `iou_threshold`. Returns kept items, best first."""
    kept: list = []
    for item in sorted(items, key=score_of, reverse=True):
        if all(iou(box_of(item), box_of(k)) <= iou_threshold for k in kept):
            kept.append(item)
    return kept
