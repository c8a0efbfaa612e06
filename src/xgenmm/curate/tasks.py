"""The three curation tasks. A task config is plain data (sent to worker processes and Ray
tasks); `build_task(config)` builds the task in the worker, loading its engine or models once.

A task turns a batch of decoded images into `Curated` samples: the Parquet row in the
released schema, the caption that goes into the WebDataset shard's `txt`, and the `json`
member. Images it cannot use are counted under a reason and left out (`None`)."""

from __future__ import annotations

import time
import zlib
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
from PIL import Image

from .sources import Record

# Parquet schemas of the outputs. `captions` and `metadata` are JSON strings, as released.
OCR_SCHEMA = pa.schema([("uid", pa.string()), ("url", pa.string()), ("key", pa.string()),
                        ("captions", pa.string()), ("metadata", pa.string())])
GROUNDING_SCHEMA = OCR_SCHEMA
KALE_SCHEMA = pa.schema([("uid", pa.string()), ("url", pa.string()), ("key", pa.string()), ("caption", pa.string()),
                         ("dense_caption", pa.string()), ("alt_text", pa.string())])


@dataclass
class Curated:
    row: dict  # the Parquet row
    caption: str  # the WebDataset `txt`
    meta: dict  # the WebDataset `json`


def _pick(key: str, options: list, choice) -> int:
    """Index of the caption for the shard's `txt`: a fixed one, or one per sample chosen by a
    hash of its key (stable across runs and processes), so a data set mixes all levels."""
    if choice == "random":
        return zlib.crc32(key.encode()) % len(options)
    return int(choice)


class Task:
    name = "task"
    schema: pa.Schema
    batch_size = 1
    engine_seconds = 0.0  # time inside the engine / models, for the benchmark's split

    def process_batch(self, items: list[tuple[Record, Image.Image]], counts: Counter) -> list[Curated | None]:
        raise NotImplementedError


# --- OCR --------------------------------------------------------------------------------


@dataclass
class OCRTaskConfig:
    """`xgenmm curate ocr`."""

    engine: str = "tesseract"  # OCR engine: "tesseract" or "paddleocr" (see curate/ocr.py ENGINES)
    lang: str | None = None  # engine language (None: the engine's English default)
    min_confidence: float = 0.5  # drop lines below this engine confidence
    min_text_height: float = 0.02  # drop lines lower than this fraction of the image height
    min_chars: int = 2  # drop lines with fewer characters
    max_lines: int = 20  # keep at most this many lines per image
    min_lines: int = 1  # images with fewer lines left are skipped as "no_text"
    txt_granularity: str | int = "random"  # the level written to the shard's txt (0-5, or "random" per sample)


class OCRTask(Task):
    name = "ocr"
    schema = OCR_SCHEMA

    def __init__(self, cfg: OCRTaskConfig):
        from .ocr import OCRFilter, build_engine

        self.cfg = cfg
        self.engine = build_engine(cfg.engine, **({"lang": cfg.lang} if cfg.lang else {}))
        self.filter = OCRFilter(cfg.min_confidence, cfg.min_text_height, cfg.min_chars, cfg.max_lines, cfg.min_lines)

    def process_batch(self, items, counts):
        from .ocr import filter_lines
        from .ocr_captions import GRANULARITIES, dumps, normalize_lines, ocr_captions, ocr_metadata

        out: list[Curated | None] = []
        for rec, image in items:
            t = time.perf_counter()
            try:
                raw = self.engine.read(image)
            except Exception:  # an engine crash on one image must not lose the shard
                counts["engine_error"] += 1
                out.append(None)
                continue
            finally:
                self.engine_seconds += time.perf_counter() - t
            lines = filter_lines(raw, image.height, self.filter)
            if len(lines) < self.filter.min_lines:
                counts["no_text" if not raw else "text_filtered_out"] += 1
                out.append(None)
                continue
            norm = normalize_lines(lines, image.width, image.height)
            captions = ocr_captions(norm, rec.alt_text)
            meta = ocr_metadata(norm)
            if not rec.alt_text:
                counts["note_missing_alt_text"] += 1
            level = _pick(rec.key, list(GRANULARITIES), self.cfg.txt_granularity)
            row = {"uid": rec.uid, "url": rec.url, "key": rec.key, "captions": dumps(captions), "metadata": dumps(meta)}
            out.append(Curated(row, captions[level]["text"], {"uid": rec.uid, "url": rec.url, "captions": captions,
                                                               "metadata": meta, "alt_text": rec.alt_text}))
        return out


# --- grounding --------------------------------------------------------------------------


@dataclass
class GroundingTaskConfig:
    """`xgenmm curate grounding`."""

    detector: str = "google/owlv2-base-patch16-ensemble"  # transformers checkpoint (folder or cached id), or "known"
    device: str = "cpu"  # torch device of the detector
    query_template: str = "{}"  # text query per name, e.g. "a photo of a {}"
    max_names: int = 8  # names per image from the alt-text
    score_threshold: float = 0.3  # drop boxes below this detector score
    iou_threshold: float = 0.5  # NMS threshold between boxes of one name
    max_per_name: int = 3  # boxes per name
    max_objects: int = 10  # boxes per image
    decimals: int = 2  # decimals of the normalised coordinates in captions
    txt_form: str = "random"  # the form written to the shard's txt: bbox | extent | position | random


class GroundingTask(Task):
    name = "grounding"
    schema = GROUNDING_SCHEMA

    def __init__(self, cfg: GroundingTaskConfig):
        from .grounding import AltTextNounPhrases, DetectionFilter, build_detector

        self.cfg = cfg
        kwargs = {} if cfg.detector == "known" else {"device": cfg.device, "query_template": cfg.query_template}
        self.detector = build_detector(cfg.detector, **kwargs)
        self.tagger = AltTextNounPhrases(max_names=cfg.max_names)
        self.filter = DetectionFilter(cfg.score_threshold, cfg.iou_threshold, cfg.max_per_name, cfg.max_objects)

    def process_batch(self, items, counts):
        from .grounding import filter_detections
        from .grounding_captions import FORMS, grounding_captions, grounding_metadata
        from .ocr_captions import dumps

        out: list[Curated | None] = []
        for rec, image in items:
            names = self.tagger.names(image, rec.alt_text)
            if not names:
                counts["missing_alt_text" if not rec.alt_text else "no_object_names"] += 1
                out.append(None)
                continue
            t = time.perf_counter()
            try:
                dets = self.detector.detect(image, names, rec.meta)
            except Exception:  # a detector failure on one image must not lose the shard
                counts["detector_error"] += 1
                out.append(None)
                continue
            finally:
                self.engine_seconds += time.perf_counter() - t
            dets = filter_detections(dets, image.width, image.height, self.filter)
            if not dets:
                counts["no_detections"] += 1
                out.append(None)
                continue
            captions = grounding_captions(dets, image.width, image.height, rec.alt_text, self.cfg.decimals)
            meta = grounding_metadata(dets, image.width, image.height)
            form = FORMS.index(self.cfg.txt_form) if self.cfg.txt_form != "random" else "random"
            pick = _pick(rec.key, list(FORMS), form)
            row = {"uid": rec.uid, "url": rec.url, "key": rec.key, "captions": dumps(captions), "metadata": dumps(meta)}
            out.append(Curated(row, captions[pick]["text"], {"uid": rec.uid, "url": rec.url, "captions": captions,
                                                             "metadata": meta, "alt_text": rec.alt_text}))
        return out


# --- KALE -------------------------------------------------------------------------------


@dataclass
class KaleTaskConfig:
    """`xgenmm curate kale` (stage 1)."""

    captioner: str = ""  # dense captioner: an xgenmm checkpoint or a transformers image-to-text checkpoint
    llm: str = ""  # fusing LLM: a transformers causal-LM checkpoint
    captioner_prompt: str | None = None  # prompt for captioners that take one (xgenmm: "Describe this image in detail.")
    prompt_file: str | None = None  # file with a fusion prompt template ({dense}, {alt}); None: kale.KALE_PROMPT
    caption_tokens: int = 128  # max new tokens of the dense caption
    fusion_tokens: int = 256  # max new tokens of the fused caption
    batch_size: int = 8  # images per generate call
    device: str = "cpu"  # torch device of both models
    on_missing_alt: str = "dense"  # no alt-text: "dense" writes the dense caption as is, "skip" drops the image


class KaleTask(Task):
    name = "kale"
    schema = KALE_SCHEMA

    def __init__(self, cfg: KaleTaskConfig):
        from pathlib import Path

        from .kale import KALE_PROMPT, LLMFuser, build_captioner

        if not cfg.captioner or not cfg.llm:
            raise ValueError("kale needs --captioner and --llm checkpoints")
        if cfg.on_missing_alt not in ("dense", "skip"):
            raise ValueError(f"on_missing_alt must be 'dense' or 'skip', got {cfg.on_missing_alt!r}")
        self.cfg = cfg
        self.batch_size = max(1, cfg.batch_size)
        template = Path(cfg.prompt_file).read_text() if cfg.prompt_file else KALE_PROMPT
        self.captioner = build_captioner(cfg.captioner, prompt=cfg.captioner_prompt, max_new_tokens=cfg.caption_tokens, device=cfg.device)
        self.fuser = LLMFuser(cfg.llm, template=template, max_new_tokens=cfg.fusion_tokens, device=cfg.device)

    def process_batch(self, items, counts):
        t = time.perf_counter()
        try:
            dense = self.captioner.caption([im for _, im in items])
        except Exception:
            counts["captioner_error"] += len(items)
            return [None] * len(items)
        finally:
            self.engine_seconds += time.perf_counter() - t
        with_alt = [i for i, (rec, _) in enumerate(items) if rec.alt_text and dense[i]]
        fused: dict[int, str] = {}
        if with_alt:
            t = time.perf_counter()
            try:
                outs = self.fuser.fuse([dense[i] for i in with_alt], [items[i][0].alt_text for i in with_alt])
                fused = dict(zip(with_alt, outs))
            except Exception:
                counts["llm_error"] += len(with_alt)
            finally:
                self.engine_seconds += time.perf_counter() - t
        out: list[Curated | None] = []
        for i, (rec, _) in enumerate(items):
            if not dense[i]:
                counts["empty_dense_caption"] += 1
                out.append(None)
                continue
            caption = fused.get(i) or ""
            if not rec.alt_text:
                if self.cfg.on_missing_alt == "skip":
                    counts["missing_alt_text"] += 1
                    out.append(None)
                    continue
                counts["note_missing_alt_text"] += 1
                caption = dense[i]
            elif not caption:
                counts["note_empty_fusion_kept_dense"] += 1
                caption = dense[i]
            row = {"uid": rec.uid, "url": rec.url, "key": rec.key, "caption": caption, "dense_caption": dense[i],
                   "alt_text": rec.alt_text or ""}
            out.append(Curated(row, caption, dict(row)))
        return out


TASKS = {"ocr": (OCRTaskConfig, OCRTask), "grounding": (GroundingTaskConfig, GroundingTask), "kale": (KaleTaskConfig, KaleTask)}


def task_name(config) -> str:
    for name, (cfg_cls, _) in TASKS.items():
        if isinstance(config, cfg_cls):
            return name
    raise TypeError(f"not a curation task config: {type(config).__name__}")


def build_task(config) -> Task:
    return TASKS[task_name(config)][1](config)
