"""Single-image SFT spends its turns where the tiny LM learns slowest: selection questions,
asked of scenes that hold several objects."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from xgenmm.synth.datasets import Corpus, SELECTION_KINDS, scene_for_kinds, weighted_kinds, write_sft_single
from xgenmm.synth.world import get_preset
from xgenmm.synth.writers import OutputDir


def test_full_scene_share_applies_to_selection_kinds_only():
    cfg = get_preset("easy")
    rng = random.Random(0)
    full = [len(scene_for_kinds(rng, cfg, ["colour"], full_share=1.0).objects) for _ in range(200)]
    assert set(full) == {cfg.max_objects}
    plain = Counter(len(scene_for_kinds(rng, cfg, ["count", "reading"], full_share=1.0).objects) for _ in range(200))
    assert set(plain) == set(range(cfg.min_objects, cfg.max_objects + 1))  # count and reading select nothing
    default = Counter(len(scene_for_kinds(rng, cfg, ["position"]).objects) for _ in range(200))
    assert set(default) == set(range(cfg.min_objects, cfg.max_objects + 1))  # the held-out sets' draw
    assert "count" not in SELECTION_KINDS and "colour" in SELECTION_KINDS


def test_weighted_kinds_draws_distinct_kinds_by_weight():
    rng = random.Random(0)
    draws = [weighted_kinds(rng, {"colour": 4.0, "count": 1.0, "reading": 1.0}, 2) for _ in range(3000)]
    assert all(len(set(d)) == 2 for d in draws)
    first = Counter(d[0] for d in draws)
    assert 0.6 < first["colour"] / 3000 < 0.73  # 4 / 6
    assert weighted_kinds(rng, {"colour": 1.0}, 3) == ["colour"]  # never more kinds than the pool


def test_sft_single_weights_kinds_and_asks_two_or_three_questions(tmp_path):
    cfg = get_preset("easy")
    stats = write_sft_single(OutputDir(tmp_path), cfg, random.Random(0), 400, Corpus(), drill_share=0.0)
    kinds = stats["kinds"]
    assert kinds["colour"] > 1.5 * kinds["count"] and kinds["position"] > 2.5 * kinds["reading"]
    rows = json.loads((tmp_path / "sft/single.json").read_text())
    assert all(len(r["conversations"]) == 2 for r in rows)  # one question per sample
    per_image = Counter(Counter(r["image"] for r in rows).values())
    assert set(per_image) == {2, 3}  # every kind can be asked of the easy world's scenes
    assert stats["images"] == 400 and stats["samples"] == len(rows) == stats["turns"]
    uniform = write_sft_single(OutputDir(tmp_path / "u"), cfg, random.Random(0), 400, Corpus(), drill_share=0.0,
                               kind_weights={k: 1.0 for k in kinds}, questions_per_image=(1, 1))
    assert uniform["turns"] == 400 and max(uniform["kinds"].values()) < 2 * min(uniform["kinds"].values())


@pytest.mark.parametrize("kw", [dict(kind_weights={"color": 1.0}), dict(kind_weights={"colour": 0.0}),
                                dict(questions_per_image=(0, 2)), dict(questions_per_image=(3, 2))])
def test_sft_single_refuses_bad_settings(tmp_path, kw):
    with pytest.raises(ValueError, match="write_sft_single"):
        write_sft_single(OutputDir(tmp_path), get_preset("easy"), random.Random(0), 4, Corpus(), **kw)


def test_one_question_samples_are_the_conversations_turns_split(tmp_path):
    """Both files hold the same images and questions; in `single.json` each question is a
    first turn with its image tag, and no sample carries another question's answer."""
    cfg = get_preset("easy")
    stats = write_sft_single(OutputDir(tmp_path), cfg, random.Random(3), 60, Corpus())
    assert stats["existence_drills"] > 0
    convs = json.loads((tmp_path / "sft/single_conversations.json").read_text())
    ones = json.loads((tmp_path / "sft/single.json").read_text())
    assert len(convs) == 60 == stats["conversations"] == stats["images"]
    assert len(ones) == stats["samples"] == stats["turns"] > 60
    assert any(len(r["conversations"]) > 2 for r in convs)
    split = []
    for r in convs:
        c = r["conversations"]
        for j in range(0, len(c), 2):
            q = c[j]["value"] if j == 0 else "<image>\n" + c[j]["value"]
            split.append({"id": f"{r['id']}-q{j // 2}", "image": r["image"],
                          "conversations": [{"from": "human", "value": q}, c[j + 1]]})
    assert ones == split
