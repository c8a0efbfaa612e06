"""Grounded captions in the three released forms of BLIP3-GROUNDING-50M. Each grounded object
in the caption is followed by its location:

| form       | "a red dog" reads                                                      |
|------------|------------------------------------------------------------------------|
| `bbox`     | a red dog <bbox>0.10, 0.52, 0.45, 0.95</bbox>                          |
| `extent`   | a red dog (starts at (0.10, 0.52) and extends up to (0.45, 0.95))      |
| `position` | a red dog (in the bottom-left corner of the image)                     |

Coordinates are normalised to [0, 1] of the image's width and height. The caption grounded is
the alt-text when every grounded name occurs in it (the location goes after the name's first
occurrence); otherwise a sentence listing the names, "The image contains red dog and sofa.".
A name with several boxes gets all of them, best first, joined by " and " (bbox form: by a
space)."""

from __future__ import annotations

import re

from .boxes import bbox_tag, extent_phrase, normalize_box, position_phrase
from .grounding import Detection

FORMS = ("bbox", "extent", "position")


def location(box, form: str, decimals: int) -> str:
    if form == "bbox":
        return bbox_tag(box, decimals)
    if form == "extent":
        return extent_phrase(box, decimals)
    if form == "position":
        return position_phrase(box)
    raise ValueError(f"grounding caption form must be one of {FORMS}, got {form!r}")


def _locations(boxes: list, form: str, decimals: int) -> str:
    parts = [location(b, form, decimals) for b in boxes]
    return " " + " ".join(parts) if form == "bbox" else " (" + " and ".join(parts) + ")"


def _find(name: str, text: str) -> re.Match | None:
    return re.search(r"(?<![\w])" + re.escape(name) + r"(?![\w])", text, flags=re.IGNORECASE)


def base_caption(names: list[str], alt_text: str | None) -> str:
    """The sentence the locations are inserted into (see the module docstring)."""
    if alt_text and all(_find(n, alt_text) for n in names):
        return alt_text.strip()
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"The image contains {listed}."


def grounded_caption(
    detections: list[Detection], width: int, height: int, alt_text: str | None, form: str, decimals: int = 2
) -> str:
    """The caption with every detected name followed by its location(s) in `form`."""
    by_name: dict[str, list] = {}
    for d in sorted(detections, key=lambda d: d.score, reverse=True):
        by_name.setdefault(d.label, []).append(normalize_box(d.box, width, height, decimals))
    if not by_name:
        raise ValueError("grounded_caption: no detections")
    # Names in the order they appear in the caption, so insertions run left to right.
    text = base_caption(list(by_name), alt_text)
    order = sorted(by_name, key=lambda n: _find(n, text).start())
    out, pos = [], 0
    for name in order:
        m = _find(name, text[pos:])
        if m is None:  # inside a longer name grounded just before ("dog" in "red dog")
            continue
        end = pos + m.end()
        out.append(text[pos:end] + _locations(by_name[name], form, decimals))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def grounding_captions(detections: list[Detection], width: int, height: int, alt_text: str | None, decimals: int = 2) -> list[dict]:
    """The `captions` list: one {text, form} per released form."""
    return [{"text": grounded_caption(detections, width, height, alt_text, f, decimals), "form": f} for f in FORMS]


def grounding_metadata(detections: list[Detection], width: int, height: int, decimals: int = 3) -> dict:
    return {
        "length": len(detections),
        "entries": [
            {"label": d.label, "score": round(d.score, 4), "bbox": list(normalize_box(d.box, width, height, decimals))}
            for d in detections
        ],
    }
