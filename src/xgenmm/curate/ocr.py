"""OCR engines behind one small interface: `engine.read(image) -> list[OCRLine]`, one line of
text per entry with its pixel box and a confidence in [0, 1]. Tesseract (through pytesseract)
is the default; PaddleOCR, which the release used, plugs in when installed. Add another
engine by subclassing `OCREngine` and registering it in `ENGINES`.

`filter_lines` applies the curation filters (confidence, text size, count) after the engine,
so that every engine is filtered the same way."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class OCRLine:
    """One line of text read from an image."""

    text: str  # the line's text, words joined by single spaces
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels
    confidence: float  # engine confidence in [0, 1] (Tesseract: mean of its word confidences)


@dataclass(frozen=True)
class OCRFilter:
    """Which engine lines become captions."""

    min_confidence: float = 0.5  # drop lines the engine is less sure of
    min_text_height: float = 0.02  # drop lines smaller than this fraction of the image height (unreadable at 384px)
    min_chars: int = 2  # drop lines with fewer non-space characters (specks read as "|" or ".")
    max_lines: int = 20  # keep at most this many lines, the most confident first, then in reading order
    min_lines: int = 1  # an image with fewer lines left is skipped as "no_text"


def filter_lines(lines: list[OCRLine], image_height: int, cfg: OCRFilter) -> list[OCRLine]:
    kept = [
        ln
        for ln in lines
        if ln.confidence >= cfg.min_confidence
        and (ln.box[3] - ln.box[1]) >= cfg.min_text_height * image_height
        and len(ln.text.replace(" ", "")) >= cfg.min_chars
    ]
    if len(kept) > cfg.max_lines:
        best = sorted(kept, key=lambda ln: ln.confidence, reverse=True)[: cfg.max_lines]
        kept = [ln for ln in kept if ln in best]
    return kept


class OCREngine:
    """Base class: read the lines of text of one RGB image."""

    name = "base"

    def read(self, image: Image.Image) -> list[OCRLine]:
        raise NotImplementedError


class TesseractEngine(OCREngine):
    """Tesseract through pytesseract. Words are grouped into lines by Tesseract's own
    (block, paragraph, line) numbering; a line's box is the union of its words' boxes and its
    confidence the mean of their confidences, divided by 100."""

    name = "tesseract"

    def __init__(self, lang: str = "eng", psm: int = 11, extra_config: str = ""):
        # psm 11 ("sparse text"): web images hold scattered words, not a page of paragraphs.
        import pytesseract

        if shutil.which(pytesseract.pytesseract.tesseract_cmd) is None:
            raise RuntimeError(
                "the Tesseract OCR engine is not installed (apt-get install tesseract-ocr, "
                "or scripts/system-deps.sh); pytesseract only drives the `tesseract` binary"
            )
        self._pt = pytesseract
        self.lang = lang
        self.config = f"--psm {psm} {extra_config}".strip()

    def read(self, image: Image.Image) -> list[OCRLine]:
        data = self._pt.image_to_data(image, lang=self.lang, config=self.config, output_type=self._pt.Output.DICT)
        groups: dict[tuple[int, int, int], list[int]] = {}
        for i, word in enumerate(data["text"]):
            if int(data["level"][i]) != 5 or not str(word).strip() or float(data["conf"][i]) < 0:
                continue
            groups.setdefault((data["block_num"][i], data["par_num"][i], data["line_num"][i]), []).append(i)
        lines = []
        for idx in groups.values():
            x1 = min(data["left"][i] for i in idx)
            y1 = min(data["top"][i] for i in idx)
            x2 = max(data["left"][i] + data["width"][i] for i in idx)
            y2 = max(data["top"][i] + data["height"][i] for i in idx)
            text = " ".join(str(data["text"][i]).strip() for i in idx)
            conf = sum(float(data["conf"][i]) for i in idx) / len(idx) / 100.0
            lines.append(OCRLine(text, (float(x1), float(y1), float(x2), float(y2)), conf))
        return sort_reading_order(lines)


class PaddleOCREngine(OCREngine):
    """PaddleOCR (the engine the release used), when the `paddleocr` package is installed.
    Its quadrilaterals are reduced to their axis-aligned bounding boxes."""

    name = "paddleocr"

    def __init__(self, lang: str = "en"):
        try:
            from paddleocr import PaddleOCR
        except ImportError as e:
            raise RuntimeError("the paddleocr engine needs `pip install paddleocr paddlepaddle`") from e
        self._ocr = PaddleOCR(lang=lang)

    def read(self, image: Image.Image) -> list[OCRLine]:
        import numpy as np

        lines = []
        for page in self._ocr.predict(np.asarray(image)) or []:
            for poly, text, score in zip(page["rec_polys"], page["rec_texts"], page["rec_scores"]):
                xs, ys = [float(p[0]) for p in poly], [float(p[1]) for p in poly]
                lines.append(OCRLine(str(text), (min(xs), min(ys), max(xs), max(ys)), float(score)))
        return sort_reading_order(lines)


def sort_reading_order(lines: list[OCRLine]) -> list[OCRLine]:
    """Top to bottom, then left to right; lines whose vertical centres are within half a line
    height of each other count as one row."""
    if not lines:
        return []
    lines = sorted(lines, key=lambda ln: (ln.box[1] + ln.box[3]) / 2)
    rows: list[list[OCRLine]] = [[lines[0]]]
    for ln in lines[1:]:
        prev = rows[-1][-1]
        if abs((ln.box[1] + ln.box[3]) - (prev.box[1] + prev.box[3])) / 2 < (prev.box[3] - prev.box[1]) / 2:
            rows[-1].append(ln)
        else:
            rows.append([ln])
    return [ln for row in rows for ln in sorted(row, key=lambda ln: ln.box[0])]


ENGINES: dict[str, type[OCREngine]] = {"tesseract": TesseractEngine, "paddleocr": PaddleOCREngine}


def build_engine(name: str, **kwargs) -> OCREngine:
    if name not in ENGINES:
        raise ValueError(f"unknown OCR engine {name!r}; choose one of {sorted(ENGINES)}")
    return ENGINES[name](**kwargs)
