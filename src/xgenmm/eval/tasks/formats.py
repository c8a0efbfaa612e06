"""Readers of the public benchmark layouts. Each returns `Sample`s and raises a DataError
naming the file, the record and the field when a record is malformed. Image paths are
resolved against the data folder; a missing image file is not an error here (the harness
skips and counts it)."""

from __future__ import annotations

import ast
import base64
import binascii
import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path

from .base import DataError, Sample, first_existing, letters, load_json, load_jsonl, need, need_list


def read_vqa_pair(folder: Path, questions: list[str], annotations: list[str], image_path: Callable[[int | str], str]) -> list[Sample]:
    """VQA layout: a questions JSON {"questions": [{"image_id", "question", "question_id"}]}
    and an annotations JSON {"annotations": [{"question_id", "answers": [{"answer"}]*10,
    "question_type"?, "answer_type"?}]}; `image_path(image_id)` names the image file."""
    qpath, apath = first_existing(folder, questions), first_existing(folder, annotations)
    qs, anns = load_json(qpath), load_json(apath)
    if not isinstance(qs, dict) or not isinstance(qs.get("questions"), list):
        raise DataError(f"{qpath}: expected an object with a 'questions' list")
    if not isinstance(anns, dict) or not isinstance(anns.get("annotations"), list):
        raise DataError(f"{apath}: expected an object with an 'annotations' list")
    by_qid = {}
    for i, a in enumerate(anns["annotations"]):
        need(a, ("question_id", "answers"), apath, f"annotation {i}")
        need_list(a, "answers", apath, f"annotation {i}", (dict, str, int, float))
        by_qid[a["question_id"]] = (i, a)
    samples = []
    for i, q in enumerate(qs["questions"]):
        need(q, ("image_id", "question", "question_id"), qpath, f"question {i}")
        qid = q["question_id"]
        if qid not in by_qid:
            raise DataError(f"{apath}: no annotation for question_id {qid!r} (question {i} of {qpath.name})")
        j, a = by_qid[qid]
        answers = []
        for k, ans in enumerate(a["answers"]):
            if isinstance(ans, dict):
                need(ans, ("answer",), apath, f"annotation {j} answer {k}")
                answers.append(str(ans["answer"]))
            else:
                answers.append(str(ans))
        if not answers:
            raise DataError(f"{apath}: annotation {j} (question_id {qid!r}) has no answers")
        meta = {k: a[k] for k in ("question_type", "answer_type", "multiple_choice_answer") if k in a}
        samples.append(Sample(str(qid), [folder / image_path(q["image_id"])], q["question"], answers, meta=meta))
    return samples


def read_answers_json(folder: Path, names: list[str], image_field: str, image_path: Callable[[str], str],
                      id_field: str | None) -> list[Sample]:
    """TextVQA ({"data": [{"question_id", "question", "image_id", "answers": [str]}]}) and
    VizWiz ([{"image", "question", "answers": [{"answer"}], "answer_type"}]) layouts."""
    path = first_existing(folder, names)
    data = load_json(path)
    rows = data.get("data") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a list of questions (or {{'data': [...]}})")
    samples = []
    for i, r in enumerate(rows):
        need(r, (image_field, "question", "answers"), path, f"record {i}")
        for k, a in enumerate(need_list(r, "answers", path, f"record {i}", (dict, str, int, float))):
            if isinstance(a, dict):
                need(a, ("answer",), path, f"record {i} answer {k}")
        answers = [str(a["answer"]) if isinstance(a, dict) else str(a) for a in r["answers"]]
        if not answers:
            raise DataError(f"{path}: record {i} has an empty 'answers' list")
        sid = str(r[id_field]) if id_field and id_field in r else str(i)
        meta = {k: r[k] for k in ("answer_type", "question_type") if k in r}
        samples.append(Sample(sid, [folder / image_path(str(r[image_field]))], r["question"], answers, meta=meta))
    return samples


def read_coco_captions(folder: Path, names: list[str], image_dir: str = "") -> list[Sample]:
    """COCO caption layout: {"images": [{"id", "file_name"}], "annotations": [{"image_id",
    "caption"}]}; one sample per image with all its captions as references. TextCaps' own
    {"data": [{"image_id", "image_name"?, "reference_strs": [...]}]} is read too."""
    path = first_existing(folder, names)
    data = load_json(path)
    if isinstance(data, dict) and "data" in data:  # TextCaps
        if not isinstance(data["data"], list):
            raise DataError(f"{path}: field 'data' must be a list of records")
        samples = []
        seen: dict[str, Sample] = {}
        for i, r in enumerate(data["data"]):
            need(r, ("image_id",), path, f"record {i}")
            if r.get("reference_strs"):
                refs = need_list(r, "reference_strs", path, f"record {i}", str)
            elif isinstance(r.get("caption_str"), str):
                refs = [r["caption_str"]]
            elif "caption_str" in r:
                raise DataError(f"{path}: record {i} field 'caption_str' must be a string")
            else:
                raise DataError(f"{path}: record {i} has neither 'reference_strs' nor 'caption_str'")
            key = str(r["image_id"])
            if key in seen:
                seen[key].answers.extend(x for x in refs if x not in seen[key].answers)
                continue
            name = r.get("image_name", key)
            name = name if Path(name).suffix else name + ".jpg"
            seen[key] = Sample(key, [folder / image_dir / name], "", list(refs))
            samples.append(seen[key])
        return samples
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise DataError(f"{path}: expected COCO captions with 'images' and 'annotations' lists")
    images = {}
    for i, im in enumerate(data["images"]):
        need(im, ("id", "file_name"), path, f"image {i}")
        images[im["id"]] = im
    refs: dict = {k: [] for k in images}
    for i, a in enumerate(data["annotations"]):
        need(a, ("image_id", "caption"), path, f"annotation {i}")
        if a["image_id"] not in images:
            raise DataError(f"{path}: annotation {i} names image_id {a['image_id']!r}, which is not in 'images'")
        if not isinstance(a["caption"], str):
            raise DataError(f"{path}: annotation {i} field 'caption' must be a string, got {a['caption']!r:.60}")
        refs[a["image_id"]].append(a["caption"])
    return [Sample(str(k), [folder / image_dir / im["file_name"]], "", refs[k])
            for k, im in images.items() if refs[k]]


def _b64(value: str, path: Path, where: str) -> bytes:
    try:
        return base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError) as e:
        raise DataError(f"{path}: {where} is not valid base64 ({e})") from e


def tsv_images(value: str, path: Path, where: str) -> list[bytes]:
    """A TSV image cell: one base64 image, or a JSON/Python list of them (multi-image)."""
    value = value.strip()
    if value.startswith("["):
        try:
            items = json.loads(value)
        except json.JSONDecodeError:
            try:
                items = ast.literal_eval(value)
            except (ValueError, SyntaxError) as e:
                raise DataError(f"{path}: {where} field 'image' is neither base64 nor a list of it ({e})") from e
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise DataError(f"{path}: {where} field 'image' must be base64 or a list of base64 strings")
        return [_b64(v, path, f"{where} image {k}") for k, v in enumerate(items)]
    return [_b64(value, path, where)]


def read_tsv(folder: Path, names: list[str], filter_row: Callable[[dict], bool] | None = None) -> list[Sample]:
    """The MMBench / SEED / VLMEvalKit TSV layout: columns index, question, A, B, C, D (E...
    optional, empty when unused), answer (a letter), image (base64, or a list of base64 for
    multi-image benchmarks), optional hint, category, l2-category. Rows whose option
    columns are missing but which have a "choices" list (MathVista) get options from it and
    the answer text mapped to its letter."""
    path = first_existing(folder, names)
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        if reader.fieldnames is None:
            raise DataError(f"{path}: empty TSV")
        samples = []
        for i, row in enumerate(reader):
            where = f"row {i + 2} (index {row.get('index', '?')})"
            need(row, ("index", "question", "answer", "image"), path, where)
            if filter_row is not None and not filter_row(row):
                continue
            options = [row[c] for c in letters(26) if c in row and row[c] not in (None, "", "nan", "NaN")]
            answer = row["answer"].strip()
            if not options and row.get("choices"):
                try:
                    options = [str(x) for x in ast.literal_eval(row["choices"])]
                except (ValueError, SyntaxError) as e:
                    raise DataError(f"{path}: {where} has an unreadable 'choices' ({e})") from e
                if answer in options:
                    answer = letters(len(options))[options.index(answer)]
            if not options:
                raise DataError(f"{path}: {where} has no options (columns A, B, ...)")
            if answer not in letters(len(options)):
                raise DataError(f"{path}: {where} has answer {answer!r}, not one of the option letters {letters(len(options))}")
            meta = {k: row[k] for k in ("category", "l2-category", "hint", "question_type", "split") if row.get(k) not in (None, "", "nan")}
            samples.append(Sample(str(row["index"]), tsv_images(row["image"], path, where), row["question"], [answer], options, meta))
    return samples


def read_pope(folder: Path, names: list[str], image_dir: str = "") -> list[Sample]:
    """POPE JSONL: {"question_id", "image", "text", "label": "yes"|"no", "category"?}."""
    samples = []
    for name in names:
        if not (folder / name).exists():
            continue
        path = folder / name
        for i, r in enumerate(load_jsonl(path)):
            need(r, ("question_id", "image", "text", "label"), path, f"line {i + 1}")
            label = str(r["label"]).strip().lower()
            if label not in ("yes", "no"):
                raise DataError(f"{path}: line {i + 1} has label {r['label']!r}; expected 'yes' or 'no'")
            cat = r.get("category", Path(name).stem)
            sid = f"{Path(name).stem}/{r['question_id']}" if len(names) > 1 else str(r["question_id"])
            samples.append(Sample(sid, [folder / image_dir / r["image"]], r["text"], [label], meta={"category": cat}))
    if not samples:
        raise FileNotFoundError(f"{folder}: none of {names} found")
    return samples


def read_multi_json(folder: Path, names: list[str]) -> list[Sample]:
    """Multi-image JSON list: [{"id", "images": [file, ...], "question", "answer",
    "question_type"?, "options"?: [...]}] (the synthetic world's and Mantis-Eval's rows).
    An answer that is an option letter is kept as the letter; otherwise the option text."""
    path = first_existing(folder, names)
    rows = load_json(path)
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a list of questions")
    samples = []
    for i, r in enumerate(rows):
        need(r, ("id", "images", "question", "answer"), path, f"record {i}")
        if not isinstance(r["images"], list) or not r["images"] or not all(isinstance(p, str) for p in r["images"]):
            raise DataError(f"{path}: record {i} field 'images' must be a non-empty list of files")
        if r.get("options") is not None:
            need_list(r, "options", path, f"record {i}", (str, int, float))
        meta = {k: r[k] for k in ("question_type", "category") if k in r}
        samples.append(Sample(str(r["id"]), [folder / p for p in r["images"]], r["question"], [str(r["answer"])],
                              [str(o) for o in r["options"]] if r.get("options") else None, meta))
    return samples


def read_grounding(folder: Path, names: list[str]) -> list[Sample]:
    """Grounding JSONL: {"id", "image", "expression", "bbox": [x1, y1, x2, y2] pixels,
    "width", "height", "prompt"?}."""
    path = first_existing(folder, names)
    samples = []
    for i, r in enumerate(load_jsonl(path)):
        need(r, ("id", "image", "expression", "bbox", "width", "height"), path, f"line {i + 1}")
        if (not isinstance(r["bbox"], list) or len(r["bbox"]) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r["bbox"])):
            raise DataError(f"{path}: line {i + 1} field 'bbox' must be [x1, y1, x2, y2] numbers, got {r['bbox']!r:.60}")
        meta = {"bbox": [float(v) for v in r["bbox"]], "width": r["width"], "height": r["height"]}
        if "prompt" in r:
            meta["prompt"] = r["prompt"]
        samples.append(Sample(str(r["id"]), [folder / r["image"]], r["expression"], [], meta=meta))
    return samples


def read_safety(folder: Path, names: list[str]) -> list[Sample]:
    """Safety JSONL: {"id", "image"?, "prompt", "unsafe": bool, "answer"?}."""
    path = first_existing(folder, names)
    samples = []
    for i, r in enumerate(load_jsonl(path)):
        need(r, ("id", "prompt", "unsafe"), path, f"line {i + 1}")
        images = [folder / r["image"]] if r.get("image") else []
        answers = [str(r["answer"])] if r.get("answer") is not None else []
        meta = {"unsafe": bool(r["unsafe"]), "question_type": "unsafe" if r["unsafe"] else r.get("question_type", "safe")}
        samples.append(Sample(str(r["id"]), images, r["prompt"], answers, meta=meta))
    return samples
