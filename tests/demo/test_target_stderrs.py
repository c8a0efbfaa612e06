"""The targets' standard errors from a run's per-sample records: written here by hand beside a
real world's held-out sets, so every pairing rule is checked against a count done by hand."""

from __future__ import annotations

import json

import pytest

from xgenmm.demo.evaluation import PREFERENCE_FILE, paired_caption_cider, target_stderrs
from xgenmm.demo.scorecard import Scorecard
from xgenmm.eval.harness import resolve_folder
from xgenmm.eval.metrics import cider
from xgenmm.eval.metrics.uncertainty import mean_stderr, paired_difference
from xgenmm.eval.tasks import get_task


def _held_out(world, task):
    t = get_task(task)
    return t.read(resolve_folder(world, t.folder))


def _write(run, stage, name, records):
    path = run / "eval" / stage / (PREFERENCE_FILE if name == "preference" else f"{name}/predictions.jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture()
def run(tmp_path, small_world):
    """A run's eval folder: every evaluation the targets compare, with known answers."""
    r = tmp_path / "run"
    vqa = _held_out(small_world, "world_vqa")
    before = [{"id": s.id, "group": s.meta["question_type"], "score": float(i % 3 != 0)} for i, s in enumerate(vqa)]
    after = [dict(x, score=float(i % 4 != 0)) for i, x in enumerate(before)]
    _write(r, "sft_single", "world_vqa", before)
    _write(r, "sft_multi", "world_vqa", after)
    _write(r, "pretrain", "world_vqa_0shot", [dict(x, score=float(i % 5 == 0)) for i, x in enumerate(before)])
    _write(r, "pretrain", "world_vqa_4shot", [dict(x, score=0.0) for x in before] + [{"id": "extra", "score": 1.0}])
    multi = _held_out(small_world, "world_multi")
    _write(r, "sft_multi", "world_multi", [{"id": s.id, "score": float(i % 2 == 0)} for i, s in enumerate(multi)])
    caps = _held_out(small_world, "world_caption")
    zero = [{"id": s.id, "answer": "a red circle", "score": None} for s in caps]
    few = [{"id": s.id, "answer": s.answers[0], "score": None} for s in caps]
    few[0] = {"id": caps[0].id, "skipped": "missing_image"}  # scored by 0-shot only: left out of the pairs
    _write(r, "pretrain", "world_caption_0shot", zero)
    _write(r, "pretrain", "world_caption_4shot", few)
    pope = _held_out(small_world, "world_pope")
    _write(r, "sft_multi", "world_pope", [{"id": s.id, "prediction": "Yes" if i % 2 else "No"} for i, s in enumerate(pope)])
    _write(r, "dpo", "world_pope", [{"id": s.id, "prediction": "No"} for s in pope])
    _write(r, "sft_multi", "preference", [{"id": str(i), "score": float(i % 4 != 0)} for i in range(40)])
    _write(r, "dpo", "preference", [{"id": str(i), "score": float(i % 5 != 0)} for i in range(40)])
    safety = _held_out(small_world, "world_safety")
    recs = []
    for i, s in enumerate(safety):
        unsafe = bool(s.meta.get("unsafe"))
        rec = {"id": s.id, "refused": unsafe and i % 7 != 0, "score": 1.0}
        if not unsafe:
            rec["answer_correct"] = float(i % 3 != 0)
        recs.append(rec)
    _write(r, "safety", "world_safety", recs)
    _write(r, "dpo", "world_safety", [dict(x, answer_correct=1.0) if "answer_correct" in x else x for x in recs])
    return r


def _card(small_world, **extra):
    c = Scorecard()
    kinds = sorted({s.meta["question_type"] for s in _held_out(small_world, "world_vqa")})
    c.add("sft_single", {f"world_vqa/{k}": 0.9 - 0.1 * (k == kinds[1]) for k in kinds})
    c.add("dpo", {"world_safety/safe_answer_accuracy": 0.8})
    for k, v in extra.items():
        stage, key = k.split("/", 1)
        c.stages.setdefault(stage, {})[key] = v
    return c, kinds[1]


def test_each_target_pairs_the_right_samples(run, small_world):
    card, lowest = _card(small_world)
    se = target_stderrs(card, run / "eval", small_world, shots=4)

    def rows(stage, name):
        path = run / "eval" / stage / (PREFERENCE_FILE if name == "preference" else f"{name}/predictions.jsonl")
        return [json.loads(x) for x in path.read_text().splitlines()]

    def scores(stage, name, field="score", keep=lambda r: True):
        return {r["id"]: float(r[field]) for r in rows(stage, name) if field in r and keep(r)}

    vqa = scores("sft_single", "world_vqa")
    assert se["vqa"] == pytest.approx(mean_stderr(list(vqa.values())))
    assert se["vqa_kinds"] == pytest.approx(mean_stderr([r["score"] for r in rows("sft_single", "world_vqa")
                                                         if r["group"] == lowest]))
    assert se["multi"] == pytest.approx(mean_stderr(list(scores("sft_multi", "world_multi").values())))
    assert se["drop"] == pytest.approx(paired_difference(scores("sft_multi", "world_vqa"), vqa)[1])
    # few-shot VQA: the extra 4-shot record has no 0-shot partner and is left out
    assert se["few_shot_vqa"] == pytest.approx(mean_stderr([-float(i % 5 == 0) for i in range(len(vqa))]))
    # captions: CIDEr over the images both evaluations scored, one document-frequency table for both
    caps = {s.id: s.answers for s in _held_out(small_world, "world_caption")}
    shared = sorted(set(caps) - {next(iter(caps))}, key=str)
    refs = {k: caps[k] for k in shared}
    few = cider({k: caps[k][0] for k in shared}, refs)[1]
    zero = cider({k: "a red circle" for k in shared}, refs)[1]
    assert se["few_shot_caption"] == pytest.approx(paired_difference(few, zero)[1])
    assert paired_caption_cider({k: {"answer": caps[k][0]} for k in caps}, {k: {"answer": "a red circle"} for k in shared},
                                small_world) == (few, zero)
    # hallucination: only the absent-object probes, "yes" before on every second one, never after
    labels = {s.id: s.answers[0] for s in _held_out(small_world, "world_pope")}
    before = {r["id"]: float(r["prediction"] == "Yes") for r in rows("sft_multi", "world_pope") if labels[r["id"]] == "no"}
    assert se["dpo_hallucination"] == pytest.approx(paired_difference({k: 0.0 for k in before}, before)[1])
    assert se["dpo_preference"] == pytest.approx(paired_difference(scores("dpo", "preference"),
                                                                   scores("sft_multi", "preference"))[1])
    unsafe = {s.id for s in _held_out(small_world, "world_safety") if s.meta.get("unsafe")}
    assert se["refused"] == pytest.approx(mean_stderr([float(r["refused"]) for r in rows("safety", "world_safety")
                                                       if r["id"] in unsafe]))
    # ordinary answers kept: a share of the 0.8 answered right before, so the paired error over 0.8
    kept = paired_difference(scores("safety", "world_safety", "answer_correct"), scores("dpo", "world_safety", "answer_correct"))
    assert se["ordinary_kept"] == pytest.approx(kept[1] / 0.8)
    assert all(v > 0 for v in se.values()), se


def test_a_stage_that_did_not_run_has_no_standard_error(run, small_world):
    import shutil

    shutil.rmtree(run / "eval" / "dpo")
    card, _ = _card(small_world)
    del card.stages["dpo"]
    se = target_stderrs(card, run / "eval", small_world, shots=4)
    assert se["dpo_preference"] is None and se["dpo_hallucination"] is None and "ordinary_kept" not in se
    assert se["vqa"] is not None and se["few_shot_vqa"] is not None
    assert target_stderrs(card, run / "eval", small_world, shots=8)["few_shot_vqa"] is None  # no 8-shot records


def test_preference_pairs_are_grouped_by_kind_and_yes_no_pairs_by_the_chosen_answer(tmp_path):
    from xgenmm.demo.evaluation import preference_group, preference_scores

    assert preference_group({"kind": "existence", "chosen": "Yes", "rejected": "no"}) == "existence_yes"
    assert preference_group({"kind": "existence", "chosen": "no.", "rejected": "yes"}) == "existence_no"
    assert preference_group({"kind": "colour", "chosen": "red", "rejected": "blue"}) == "colour"
    assert preference_group({"chosen": "red", "rejected": "blue"}) is None
    rows = [{"id": "0", "group": "existence_yes", "score": 1.0}, {"id": "1", "group": "existence_yes", "score": 0.0},
            {"id": "2", "group": "colour", "score": 1.0}, {"id": "3", "score": 0.0}]
    assert preference_scores(rows) == {"preference_accuracy": 0.5, "preference_accuracy/colour": 1.0,
                                       "preference_accuracy/existence_yes": 0.5}
