"""Grounding: which objects an image shows (names) and where (boxes).

Names come from a `Tagger`. The default, `AltTextNounPhrases`, is a documented heuristic,
not a parser: the alt-text is lower-cased and cut into chunks at punctuation and at function
words (articles, prepositions, conjunctions, pronouns, common verbs; `BOUNDARY_WORDS`); each
chunk keeps its last `max_words` words and becomes a name unless it is a generic word of web
captions ("image", "photo", "stock", ...). "A red dog sitting on the sofa, stock photo" gives
["red dog", "sofa"]. An open-world tagger (what the release used) plugs in by subclassing
`Tagger`.

Boxes come from a `Detector`. The default, `HFZeroShotDetector`, runs any checkpoint that
transformers' `AutoModelForZeroShotObjectDetection` loads (OWL-ViT, OWLv2, Grounding DINO),
from a local folder or the Hugging Face cache. `KnownBoxesDetector` reads boxes that the
source already has (e.g. annotations), which also makes caption formatting exactly testable."""

from __future__ import annotations

import re
from dataclasses import dataclass

from PIL import Image

from .boxes import Box, clip_box, dedupe


@dataclass(frozen=True)
class Detection:
    label: str  # the name the box was found for
    box: Box  # x1, y1, x2, y2 in pixels
    score: float  # detector confidence in [0, 1]


BOUNDARY_WORDS = frozenset(
    """a an the this that these those some any each every no my your his her its our their
    of in on at to for from with without by into onto over under above below behind beside
    near next between through during before after around against along across up down out off
    and or but nor so yet as than while when where which who whom whose what how why if
    is are was were be been being am has have had do does did can could will would shall
    should may might must it he she they we you i me him them us
    sitting standing lying holding looking walking running sits stands lies holds looks
    walks runs showing shows shown made using used featuring features set isolated""".split()
)
GENERIC_WORDS = frozenset(
    """image images photo photos picture pictures stock illustration vector background free
    royalty hd high quality view close closeup new best top one two three""".split()
)


class Tagger:
    """Names of the objects to look for in an image."""

    def names(self, image: Image.Image, alt_text: str | None) -> list[str]:
        raise NotImplementedError


@dataclass
class AltTextNounPhrases(Tagger):
    """Noun-phrase-like chunks of the alt-text (see the module docstring)."""

    max_words: int = 3  # keep the last words of a chunk: the head noun and its nearest modifiers
    max_names: int = 8  # at most this many names per image
    min_chars: int = 3  # drop shorter names ("x", "tv" still needs a real tagger)

    def names(self, image: Image.Image | None, alt_text: str | None) -> list[str]:
        return noun_phrases(alt_text or "", self.max_words, self.max_names, self.min_chars)


def noun_phrases(text: str, max_words: int = 3, max_names: int = 8, min_chars: int = 3) -> list[str]:
    chunks: list[list[str]] = [[]]
    for tok in re.findall(r"[a-z][a-z'-]*|\d+|[^\sa-z\d]", text.lower()):
        if tok in BOUNDARY_WORDS or not tok[0].isalpha():
            chunks.append([])
        else:
            chunks[-1].append(tok)
    names: list[str] = []
    for chunk in chunks:
        words = [w for w in chunk if w not in GENERIC_WORDS][-max_words:]
        name = " ".join(words)
        if len(name) >= min_chars and name not in names:
            names.append(name)
    return names[:max_names]


@dataclass(frozen=True)
class DetectionFilter:
    """Which detections are kept."""

    score_threshold: float = 0.3  # drop boxes the detector is less sure of
    iou_threshold: float = 0.5  # de-duplicate boxes of one name overlapping more than this (NMS)
    max_per_name: int = 3  # at most this many boxes per name, best first
    max_objects: int = 10  # at most this many boxes per image, best first
    min_box_fraction: float = 0.0005  # drop boxes smaller than this fraction of the image area


def filter_detections(dets: list[Detection], width: int, height: int, cfg: DetectionFilter) -> list[Detection]:
    min_area = cfg.min_box_fraction * width * height
    clipped = []
    for d in dets:
        box = clip_box(d.box, width, height)
        if d.score >= cfg.score_threshold and (box[2] - box[0]) * (box[3] - box[1]) > min_area:
            clipped.append(Detection(d.label, box, d.score))
    kept: list[Detection] = []
    for label in dict.fromkeys(d.label for d in clipped):
        same = dedupe([d for d in clipped if d.label == label], lambda d: d.box, lambda d: d.score, cfg.iou_threshold)
        kept.extend(same[: cfg.max_per_name])
    return sorted(kept, key=lambda d: d.score, reverse=True)[: cfg.max_objects]


class Detector:
    """Boxes for the given names in one RGB image (unfiltered; `filter_detections` follows)."""

    def detect(self, image: Image.Image, names: list[str], meta: dict | None = None) -> list[Detection]:
        raise NotImplementedError


class KnownBoxesDetector(Detector):
    """Boxes the source already has: `meta["objects"] = [{"name", "box": [x1, y1, x2, y2]
    (pixels), "score"?}]`. Names not asked for are ignored."""

    def detect(self, image: Image.Image, names: list[str], meta: dict | None = None) -> list[Detection]:
        objects = (meta or {}).get("objects") or []
        wanted = set(names)
        return [
            Detection(str(o["name"]), tuple(float(v) for v in o["box"]), float(o.get("score", 1.0)))
            for o in objects
            if str(o["name"]) in wanted
        ]


class HFZeroShotDetector(Detector):
    """transformers zero-shot object detection (OWL-ViT, OWLv2, Grounding DINO)."""

    def __init__(self, model: str, device: str = "cpu", query_template: str = "{}", text_threshold: float = 0.25):
        import torch
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        self.torch = torch
        self.model = AutoModelForZeroShotObjectDetection.from_pretrained(model).to(device).eval()
        self.processor = AutoProcessor.from_pretrained(model)
        self.device = device
        self.query_template = query_template  # e.g. "a photo of a {}" for CLIP-style text towers
        self.text_threshold = text_threshold  # Grounding DINO: token score needed to name a box
        self.model_type = self.model.config.model_type

    def detect(self, image: Image.Image, names: list[str], meta: dict | None = None) -> list[Detection]:
        if not names:
            return []
        queries = [self.query_template.format(n) for n in names]
        w, h = image.size
        grounding_dino = "grounding" in self.model_type
        text = ". ".join(queries) + "." if grounding_dino else [queries]
        inputs = self.processor(text=text, images=image, padding=True, truncation=True, return_tensors="pt").to(self.device)
        with self.torch.no_grad():
            outputs = self.model(**inputs)
        if grounding_dino:
            res = self.processor.post_process_grounded_object_detection(
                outputs, inputs["input_ids"], threshold=0.0, text_threshold=self.text_threshold, target_sizes=[(h, w)]
            )[0]
            labels = [self._match(str(t), queries, names) for t in res.get("text_labels", res["labels"])]
        else:
            # OWLv2 pads the image to a square before resizing, so its boxes are relative to
            # the padded square: scale by the longer side, then clip to the image.
            size = (max(w, h), max(w, h)) if self.model_type == "owlv2" else (h, w)
            res = self.processor.post_process_grounded_object_detection(
                outputs, threshold=0.0, target_sizes=[size], text_labels=[queries]
            )[0]
            labels = [names[int(i)] for i in res["labels"]]
        return [
            Detection(label, tuple(float(v) for v in box.tolist()), float(score))
            for label, box, score in zip(labels, res["boxes"], res["scores"])
            if label is not None
        ]

    @staticmethod
    def _match(text: str, queries: list[str], names: list[str]) -> str | None:
        text = text.strip().lower()
        for q, n in zip(queries, names):
            if text == q.lower() or text in q.lower() or q.lower() in text:
                return n
        return None


def build_detector(name: str, **kwargs) -> Detector:
    """"known" for `KnownBoxesDetector`; anything else is a transformers checkpoint (folder
    or Hugging Face id) for `HFZeroShotDetector`."""
    if name == "known":
        return KnownBoxesDetector()
    return HFZeroShotDetector(name, **kwargs)
