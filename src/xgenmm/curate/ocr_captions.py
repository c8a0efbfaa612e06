"""OCR captions at the six granularity levels of BLIP3-OCR-200M, from the plain list of texts
to one `<ocr>text</ocr><bbox>...</bbox>` per line. Coordinates are normalised to [0, 1] of the
image's width and height. Each level is written once without and, when the image has
alt-text, once with the raw web caption in front (`include_datacomp_raw_cap`), as in the
released `captions` field.

| level | each line reads                                                          |
|-------|--------------------------------------------------------------------------|
| 0     | the text "SALE"                                                          |
| 1     | the text "SALE" located in the top-left corner of the image              |
| 2     | the text "SALE" approximately starts at (0.1, 0.0) and extends up to (0.4, 0.2) |
| 3     | the text "SALE" starts at (0.112, 0.045) and extends up to (0.385, 0.170) |
| 4     | the text "SALE" (<bbox>0.112, 0.045, 0.385, 0.170</bbox>)                |
| 5     | <ocr>SALE</ocr><bbox>0.112, 0.045, 0.385, 0.170</bbox>                   |

Levels 0-4 are sentences ("The image contains the text ..., the text ...."); level 5 is the
structured form, lines separated by spaces, in reading order."""

from __future__ import annotations

import json
from dataclasses import dataclass

from .boxes import Box, bbox_tag, box_corners, extent_phrase, normalize_box, position_phrase
from .ocr import OCRLine

GRANULARITIES = (0, 1, 2, 3, 4, 5)
PRECISE_DECIMALS = 3  # levels 3-5 and the metadata
APPROX_DECIMALS = 1  # level 2


@dataclass(frozen=True)
class NormalizedLine:
    text: str
    box: Box  # normalised x1, y1, x2, y2
    confidence: float


def normalize_lines(lines: list[OCRLine], width: int, height: int) -> list[NormalizedLine]:
    return [NormalizedLine(ln.text, normalize_box(ln.box, width, height, PRECISE_DECIMALS), ln.confidence) for ln in lines]


def _span(line: NormalizedLine, level: int) -> str:
    quoted = f'the text "{line.text}"'
    if level == 0:
        return quoted
    if level == 1:
        return f"{quoted} located {position_phrase(line.box)}"
    if level == 2:
        approx = tuple(round(v, APPROX_DECIMALS) for v in line.box)
        return f"{quoted} approximately {extent_phrase(approx, APPROX_DECIMALS)}"
    if level == 3:
        return f"{quoted} {extent_phrase(line.box, PRECISE_DECIMALS)}"
    if level == 4:
        return f"{quoted} ({bbox_tag(line.box, PRECISE_DECIMALS)})"
    raise ValueError(f"granularity {level} is not a sentence level")


def ocr_caption(lines: list[NormalizedLine], level: int) -> str:
    """The caption of one granularity level for lines already in reading order."""
    if level not in GRANULARITIES:
        raise ValueError(f"OCR granularity must be one of {GRANULARITIES}, got {level}")
    if not lines:
        raise ValueError("ocr_caption: no lines")
    if level == 5:
        return " ".join(f"<ocr>{ln.text}</ocr>{bbox_tag(ln.box, PRECISE_DECIMALS)}" for ln in lines)
    return "The image contains " + ", ".join(_span(ln, level) for ln in lines) + "."


def with_raw_caption(raw: str, caption: str) -> str:
    raw = raw.strip()
    sep = " " if raw[-1:] in ".!?" else ". "
    return raw + sep + caption


def ocr_captions(lines: list[NormalizedLine], alt_text: str | None) -> list[dict]:
    """The released `captions` list: {text, granularity, include_datacomp_raw_cap} for every
    level, then every level again with the alt-text in front when there is one."""
    out = [{"text": ocr_caption(lines, g), "granularity": g, "include_datacomp_raw_cap": False} for g in GRANULARITIES]
    if alt_text:
        out += [
            {"text": with_raw_caption(alt_text, ocr_caption(lines, g)), "granularity": g, "include_datacomp_raw_cap": True}
            for g in GRANULARITIES
        ]
    return out


def ocr_metadata(lines: list[NormalizedLine]) -> dict:
    """Per-line OCR metadata: text, confidence and the normalised box as four corner points
    (clockwise from the top-left, the quadrilateral form the release's engine writes)."""
    return {
        "length": len(lines),
        "entries": [
            {"text": ln.text, "confidence": round(ln.confidence, 4), "bbox": box_corners(ln.box)} for ln in lines
        ],
    }


def dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False)
