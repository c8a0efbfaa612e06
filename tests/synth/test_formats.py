"""Every file of the small world is readable by its real library, in its real layout."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections import Counter
from pathlib import Path

import webdataset as wds
from PIL import Image

from xgenmm.synth.language import QUESTION_KINDS, REFUSAL
from xgenmm.synth.multi import MULTI_KINDS


def _json(path: Path):
    return json.loads(path.read_text())


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _png(path: Path) -> Image.Image:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.convert("RGB")


def test_caption_shards_read_back_with_webdataset(small_world, small_manifest):
    shards = [str(small_world / s) for s in small_manifest["paths"]["captions"]]
    samples = list(wds.WebDataset(shards, shardshuffle=False).decode("pil"))
    assert len(samples) == small_manifest["datasets"]["train"]["captions"]["samples"]
    styles = Counter()
    for s in samples:
        assert s["png"].size == (96, 96) and s["txt"]
        styles[s["json"]["caption_style"]] += 1
        assert s["json"]["uid"] == s["__key__"]
    assert set(styles) == {"plain", "ocr_quoted", "ocr_tagged", "grounding_bbox", "grounding_starts", "grounding_phrase"}


def test_interleaved_documents_name_image_members_of_their_sample(small_world, small_manifest):
    shards = [str(small_world / s) for s in small_manifest["paths"]["interleaved"]]
    docs = list(wds.WebDataset(shards, shardshuffle=False))
    assert len(docs) == small_manifest["datasets"]["train"]["interleaved"]["samples"]
    for d in docs:
        segs = json.loads(d["json"])["segments"]
        members = [s["member"] for s in segs if s["type"] == "image"]
        assert len(members) >= 2
        for m in members:
            assert Image.open(io.BytesIO(d[m])).size == (96, 96)
        assert all(isinstance(s["text"], str) for s in segs if s["type"] == "text")


def test_llava_image_tags_equal_image_counts(small_world):
    for rel in ("sft/single.json", "sft/multi.json", "safety/train.json"):
        path = small_world / rel
        for row in _json(path):
            images = row["image"] if isinstance(row["image"], list) else [row["image"]]
            tags = sum(t["value"].count("<image>") for t in row["conversations"])
            assert tags == len(images), row["id"]
            assert [t["from"] for t in row["conversations"]] == ["human", "gpt"] * (len(row["conversations"]) // 2)
            for im in images:
                assert (path.parent / im).is_file()


def test_sft_covers_every_question_kind(small_manifest):
    single = small_manifest["datasets"]["train"]["sft_single"]["kinds"]
    assert set(QUESTION_KINDS) | {"describe"} == set(single)
    # a share of the images carry an existence drill: four yes/no probes each
    assert small_manifest["datasets"]["train"]["sft_single"]["existence_drills"] > 0
    assert single["existence"] > 2 * single["colour"]
    assert set(small_manifest["datasets"]["train"]["sft_multi"]["kinds"]) == set(MULTI_KINDS)


def test_dpo_pairs_reject_a_different_answer(small_world):
    rows = _jsonl(small_world / "dpo/pairs.jsonl")
    assert {"existence", "colour", "shape", "count", "describe"} == {r["kind"] for r in rows}
    for r in rows:
        assert r["prompt"].startswith("<image>\n") and r["chosen"] != r["rejected"]
        assert (small_world / "dpo" / r["image"]).is_file()


def test_safety_training_mixes_refusals_with_ordinary_answers(small_world):
    answers = [row["conversations"][1]["value"] for row in _json(small_world / "safety/train.json")]
    refusals = sum(a == REFUSAL for a in answers)
    assert 0 < refusals < len(answers)


def test_world_vqa_is_in_the_vqav2_layout(small_world):
    d = small_world / "eval/world_vqa"
    qs = _json(d / "questions.json")["questions"]
    anns = {a["question_id"]: a for a in _json(d / "annotations.json")["annotations"]}
    assert len(qs) == len(anns) and {a["question_type"] for a in anns.values()} == set(QUESTION_KINDS)
    for q in qs:
        a = anns[q["question_id"]]
        assert a["image_id"] == q["image_id"] and len(a["answers"]) == 10
        assert {x["answer"] for x in a["answers"]} == {a["multiple_choice_answer"]}
        assert _png(d / f"images/{q['image_id']}.png").size == (96, 96)


def test_world_caption_is_in_the_coco_layout(small_world):
    for name in ("world_caption", "world_caption_train"):
        d = small_world / "eval" / name
        data = _json(d / "captions.json")
        per_image = Counter(a["image_id"] for a in data["annotations"])
        assert {im["id"] for im in data["images"]} == set(per_image)
        assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])
        for im in data["images"]:
            assert (d / im["file_name"]).is_file()


def test_world_mc_is_an_mmbench_tsv_with_base64_images(small_world):
    with open(small_world / "eval/world_mc/mc.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert rows and list(rows[0]) == ["index", "question", "A", "B", "C", "D", "answer", "category", "image"]
    for r in rows:
        assert r["answer"] in "ABCD" and len({r[k] for k in "ABCD"}) == 4
        assert Image.open(io.BytesIO(base64.b64decode(r["image"]))).size == (96, 96)


def test_world_pope_probes_are_balanced_per_category(small_world):
    rows = _jsonl(small_world / "eval/world_pope/pope.jsonl")
    by = Counter((r["category"], r["label"]) for r in rows)
    for cat in ("random", "popular", "adversarial"):
        assert by[(cat, "yes")] == by[(cat, "no")] > 0
    assert all((small_world / "eval/world_pope" / r["image"]).is_file() for r in rows)


def test_world_multi_questions_name_their_images_and_options(small_world):
    d = small_world / "eval/world_multi"
    rows = _json(d / "multi.json")
    assert {r["question_type"] for r in rows} == set(MULTI_KINDS)
    for r in rows:
        assert len(r["images"]) >= 2 and all((d / im).is_file() for im in r["images"])
        assert "options" not in r or r["answer"] in r["options"]


def test_world_grounding_boxes_are_pixels_inside_the_image(small_world):
    d = small_world / "eval/world_grounding"
    for r in _jsonl(d / "grounding.jsonl"):
        x1, y1, x2, y2 = r["bbox"]
        assert 0 <= x1 < x2 <= r["width"] and 0 <= y1 < y2 <= r["height"]
        assert _png(d / r["image"]).size == (r["width"], r["height"])
        assert r["expression"] in r["prompt"]


def test_world_safety_holds_unsafe_and_ordinary_prompts(small_world):
    rows = _jsonl(small_world / "eval/world_safety/safety.jsonl")
    assert {r["unsafe"] for r in rows} == {True, False}
    assert all("answer" in r for r in rows if not r["unsafe"])


def test_manifest_lists_every_file_written(small_world, small_manifest):
    on_disk = {str(p.relative_to(small_world)) for p in small_world.rglob("*") if p.is_file()}
    listed = {f["path"] for f in small_manifest["files"]}
    assert on_disk - {"manifest.json"} == listed
    one = small_manifest["files"][0]
    assert (small_world / one["path"]).stat().st_size == one["bytes"]


def test_manifest_gives_chance_levels_per_task(small_manifest):
    chance, world = small_manifest["chance"], small_manifest["world"]
    assert chance["world_vqa/colour"] == round(1 / len(world["colours"]), 4)
    assert chance["world_vqa/existence"] == 0.5 and chance["world_mc"] == 0.25
    assert all(f"world_vqa/{k}" in chance for k in QUESTION_KINDS)
    assert all(0 <= v <= 1 for v in chance.values())


def test_interleaved_quiz_pages_use_the_few_shot_vqa_form(small_world, small_manifest):
    """Every third document is a quiz page: pictures each followed by "Question:... Short
    answer:..." (the base convention's few-shot VQA form), with the answer true of its picture."""
    shards = [str(small_world / s) for s in small_manifest["paths"]["interleaved"]]
    docs = list(wds.WebDataset(shards, shardshuffle=False))
    quizzes = [d for d in docs if "Short answer:" in d["json"].decode()]
    assert len(quizzes) == len(docs) // 3 == small_manifest["datasets"]["train"]["interleaved"]["pages"]["quiz"]
    for d in quizzes:
        segs = json.loads(d["json"])["segments"]
        assert [s["type"] for s in segs] == ["image", "text"] * (len(segs) // 2)
        for seg, scene in zip(segs[1::2], json.loads(d["json"])["scenes"]):
            q, a = seg["text"].split(" Short answer:")
            assert q.startswith("Question:") and a
            if q.startswith("Question:What word is written"):
                assert a == scene["words"][0]["text"]
