"""What a task is: a reader of the benchmark's public file layout, prompts, answer extraction
and a metric, declared once. Readers return `Sample`s; the harness does the rest."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ImageSource = Path | bytes  # a file, or encoded image bytes (base64 in TSV files)


class DataError(ValueError):
    """A data file that does not have the layout its task reads; names file, record, field."""


# How multiple choice is scored: read the generated letter, or pick the most likely option.
MC_SCORINGS = ("generate", "likelihood")
# How few-shot demonstrations are chosen (harness._Demonstrations).
DEMO_SELECTIONS = ("random", "similar")


@dataclass
class Sample:
    """One evaluation item, whatever the benchmark."""

    id: str  # unique within the task; predictions are keyed (and resumed) by it
    images: list[ImageSource]  # in the order the images appear in the prompt
    question: str  # the user's text, without image tags ("" for captioning)
    answers: list[str]  # references: human answers, captions, the option letter, "yes"/"no", ...
    options: list[str] | None = None  # option texts in letter order (multiple choice)
    meta: dict = field(default_factory=dict)  # question_type, category, bbox, hint, ...


# The kinds of scoring the harness knows; each task picks one.
KINDS = ("vqa", "anls", "caption", "mc", "pope", "multi", "grounding", "safety")


@dataclass(frozen=True)
class Task:
    """A benchmark, declared. `layout` documents the files `read` expects under the task's
    data folder (and, for few-shot, the same layout under `{folder}_train`)."""

    name: str  # what --task takes
    kind: str  # one of KINDS: selects answer extraction and metric
    folder: str  # the data folder name under --data (the synthetic world writes eval/<folder>)
    layout: str  # the public file layout read, for the docs and for error messages
    read: Callable[[Path], list[Sample]]  # folder -> samples
    instruct_prompt: Callable[[Sample], str]  # the user turn's text (image tags are added)
    base_prompt: Callable[[Sample], str] | None = None  # few-shot instruction: "Question:{q} Short answer:"
    base_answer: Callable[[Sample], str] | None = None  # a demonstration's answer
    max_new_tokens: int = 16  # generation budget
    mc_scoring: str = "generate"  # multiple choice: one of MC_SCORINGS
    breakdown: str | None = None  # a meta key for per-group scores (question_type, category)
    refusal: str | None = None  # safety: the refusal sentence the model was taught
    box_question_types: tuple[str, ...] = ()  # VQA question types whose answer is a box: scored by IoU >= 0.5

    @property
    def few_shot(self) -> bool:
        return self.base_prompt is not None


# ---- helpers for readers -------------------------------------------------------------------


def load_json(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e


def load_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {i} is not valid JSON ({e})") from e
    return rows


def need(record: dict, fields: Sequence[str], path: Path, where: str) -> None:
    """Raise a DataError naming the file, the record and the first missing field."""
    if not isinstance(record, dict):
        raise DataError(f"{path}: {where} is not an object")
    for f in fields:
        if f not in record or record[f] is None:
            raise DataError(f"{path}: {where} has no field {f!r}")


def need_list(record: dict, field: str, path: Path, where: str, of: type | tuple[type, ...] | None = None) -> list:
    """`record[field]`, which must be a list (a string of answers is not one: it would be read
    letter by letter), of `of` items where given; else a DataError naming file, record and field."""
    value = record[field]
    if not isinstance(value, list):
        raise DataError(f"{path}: {where} field {field!r} must be a list, got {type(value).__name__} {value!r:.60}")
    if of is not None:
        for k, v in enumerate(value):
            if not isinstance(v, of) or isinstance(v, bool):
                raise DataError(f"{path}: {where} field {field!r} item {k} has type {type(v).__name__}: {v!r:.60}")
    return value


def first_existing(folder: Path, names: Sequence[str]) -> Path:
    """The first of `names` present in `folder` (several public file names for one file)."""
    for n in names:
        if (folder / n).exists():
            return folder / n
    raise FileNotFoundError(f"{folder}: none of {list(names)} found")


def letters(n: int) -> str:
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:n]


def options_block(options: Sequence[str]) -> str:
    return "\n".join(f"{letter}. {opt}" for letter, opt in zip(letters(len(options)), options))
