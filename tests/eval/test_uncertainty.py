"""Standard errors beside the scores: the formulas, the paired difference, the seeded
bootstrap, and `aggregate` / the markdown table carrying them."""

import math
import random

import pytest

from xgenmm.eval.metrics import pope_scores
from xgenmm.eval.metrics.uncertainty import (binary_f1, binary_precision, binary_recall, bootstrap_stderr, mean_stderr,
                                             paired_difference)
from xgenmm.eval.report import markdown_table
from xgenmm.eval.scoring import aggregate, score_sample
from xgenmm.eval.tasks import Sample, get_task


def test_mean_stderr_is_the_sample_standard_deviation_over_root_n():
    # mean 0.75, squared deviations 3 x 0.0625 + 0.5625 = 0.75, / (n - 1) = 0.25, sd 0.5, / 2
    assert mean_stderr([1, 0, 1, 1]) == pytest.approx(0.25)
    p, n = 0.9, 640  # a binary score: sqrt(p (1 - p) / (n - 1))
    values = [1.0] * int(p * n) + [0.0] * (n - int(p * n))
    assert mean_stderr(values) == pytest.approx(math.sqrt(p * (1 - p) / (n - 1)))
    assert mean_stderr([0.5]) is None and mean_stderr([]) is None


def test_paired_difference_uses_shared_ids_and_cancels_what_both_share():
    before = {str(i): float(i % 3 == 0) for i in range(300)}
    after = dict(before, **{"1": 1.0, "2": 1.0, "4": 1.0})  # three samples gained, the rest unchanged
    diff, se, n = paired_difference({**after, "extra": 1.0}, before)
    assert n == 300 and diff == pytest.approx(3 / 300)
    assert se == pytest.approx(mean_stderr([1.0] * 3 + [0.0] * 297))
    assert se < mean_stderr(list(after.values())) / 4  # far below either score's own
    assert paired_difference(before, before)[:2] == (0.0, 0.0)
    with pytest.raises(ValueError, match="share no sample id"):
        paired_difference({"a": 1.0}, {"b": 1.0})


def test_bootstrap_stderr_is_seeded_and_agrees_with_the_formula_for_a_mean():
    rng = random.Random(0)
    x = [float(rng.random() < 0.3) for _ in range(400)]
    a = bootstrap_stderr(lambda v: float(v.mean()), x, seed=1)
    assert a == bootstrap_stderr(lambda v: float(v.mean()), x, seed=1)
    assert a == pytest.approx(mean_stderr(x), rel=0.15)
    assert bootstrap_stderr(lambda v: float(v.mean()), [1.0] * 10) == 0.0
    assert bootstrap_stderr(lambda v: float(v.mean()), [1.0]) is None
    with pytest.raises(ValueError, match="differ in length"):
        bootstrap_stderr(binary_f1, [True, False], [True])


def test_binary_f1_precision_and_recall_are_popes():
    rng = random.Random(3)
    labels = [rng.choice(["yes", "no"]) for _ in range(50)]
    preds = [rng.choice(["Yes.", "No, there is not.", "no"]) for _ in range(50)]
    said_yes = [p.startswith("Yes") for p in preds]
    pope = pope_scores(preds, labels)
    label_yes = [lab == "yes" for lab in labels]
    assert binary_f1(said_yes, label_yes) == pytest.approx(pope["f1"])
    assert binary_precision(said_yes, label_yes) == pytest.approx(pope["precision"])
    assert binary_recall(said_yes, label_yes) == pytest.approx(pope["recall"])
    assert binary_precision([False], [True]) == binary_recall([True], [False]) == 0.0
    assert binary_f1([False, False], [True, False]) == 0.0


def _vqa_records(n_right: int, n: int):
    task = get_task("world_vqa")
    samples, records = {}, []
    for i in range(n):
        kind = "colour" if i % 2 else "count"
        s = Sample(str(i), [], "What colour is the circle?", ["red"] * 10, meta={"question_type": kind})
        samples[s.id] = s
        records.append(score_sample(task, s, "red" if i < n_right else "blue"))
    return task, records, samples


def test_aggregate_gives_each_score_and_each_group_its_stderr():
    task, records, samples = _vqa_records(30, 40)
    m = aggregate(task, records, samples)
    assert m["vqa_accuracy"] == pytest.approx(0.75)
    assert m["vqa_accuracy_stderr"] == pytest.approx(mean_stderr([r["score"] for r in records]))
    assert set(m["by_question_type_stderr"]) == set(m["by_question_type"]) == {"colour", "count"}
    table = markdown_table([{"task": "world_vqa", "shots": None, "scored": 40, "skipped": {}, "main_metric": "vqa_accuracy",
                             "metrics": m, "samples_per_s": 1.0}])
    assert f"0.7500 ± {m['vqa_accuracy_stderr']:.4f}" in table
    assert "vqa_accuracy_stderr" not in table and "by question type stderr" not in table
    assert f"colour {m['by_question_type']['colour']:.4f} ± " in table


def test_aggregate_pope_f1_stderr_by_bootstrap_and_caption_cider_stderr():
    pope = get_task("world_pope")
    samples = {str(i): Sample(str(i), [], "Is there a red circle?", ["yes" if i % 2 else "no"]) for i in range(60)}
    records = [score_sample(pope, s, "Yes" if int(s.id) % 3 else "No") for s in samples.values()]
    m = aggregate(pope, records, samples)
    said_yes = [r["prediction"] == "Yes" for r in records]
    label_yes = [s.answers[0] == "yes" for s in samples.values()]
    assert m["f1_stderr"] == bootstrap_stderr(binary_f1, said_yes, label_yes) and 0.0 < m["f1_stderr"] < 0.2
    assert m["accuracy_stderr"] == pytest.approx(mean_stderr([r["score"] for r in records]))
    assert m["recall_stderr"] == bootstrap_stderr(binary_recall, said_yes, label_yes) > 0
    assert m["precision_stderr"] == bootstrap_stderr(binary_precision, said_yes, label_yes) > 0
    cap = get_task("world_caption")
    samples = {str(i): Sample(str(i), [], None, [f"a red circle at the top {i % 4}", "a red circle"]) for i in range(12)}
    records = [score_sample(cap, s, "a red circle" if i % 2 else "a blue square") for i, s in enumerate(samples.values())]
    m = aggregate(cap, records, samples)
    assert m["cider_stderr"] == pytest.approx(mean_stderr([r["score"] for r in records]))


def test_grounding_mean_iou_has_its_stderr():
    task = get_task("world_grounding")
    samples = {str(i): Sample(str(i), [], "the red circle", ["<bbox>0.10, 0.10, 0.50, 0.50</bbox>"],
                              meta={"width": 96, "height": 96, "bbox": [9.6, 9.6, 48.0, 48.0]}) for i in range(6)}
    preds = ["<bbox>0.10, 0.10, 0.50, 0.50</bbox>", "<bbox>0.12, 0.10, 0.50, 0.52</bbox>", "nowhere",
             "<bbox>0.60, 0.60, 0.90, 0.90</bbox>", "<bbox>0.10, 0.10, 0.40, 0.40</bbox>", "<bbox>0.0, 0.0, 0.5, 0.5</bbox>"]
    records = [score_sample(task, s, p) for s, p in zip(samples.values(), preds)]
    m = aggregate(task, records, samples)
    assert m["mean_iou_stderr"] == pytest.approx(mean_stderr([r["iou"] for r in records])) and m["mean_iou_stderr"] > 0
    assert m["accuracy@0.5_stderr"] == pytest.approx(mean_stderr([r["score"] for r in records]))


def test_bleu_stderr_is_a_seeded_bootstrap_over_captions():
    """Corpus BLEU is not a mean of per-caption scores: its standard error comes from resampling
    the captions' sufficient statistics. Checked against a bootstrap written here with numpy."""
    import numpy as np

    from xgenmm.eval.metrics import bleu, bleu_statistics, bleu_stderr, corpus_bleu

    rng = random.Random(3)
    words = "a red blue circle square triangle at the top left right bottom of picture".split()
    refs = {i: [" ".join(rng.choices(words, k=8)) for _ in range(3)] for i in range(40)}
    preds = {i: (refs[i][0] if i % 3 else " ".join(rng.choices(words, k=rng.randint(3, 9)))) for i in range(40)}
    rows, per_id = bleu_statistics(preds, refs)
    assert rows.shape == (40, 10)
    assert corpus_bleu(rows) == bleu(preds, refs)[0] and per_id == bleu(preds, refs)[1]
    se = bleu_stderr(rows)
    assert se == bleu_stderr(rows) and se != bleu_stderr(rows, seed=1)  # seeded
    gen = np.random.default_rng(0)
    by_hand = np.std([corpus_bleu(rows[gen.integers(0, 40, 40)]) for _ in range(4000)], ddof=1)
    assert se == pytest.approx(by_hand, rel=0.15) and 0.01 < se < 0.3
    assert bleu_stderr(rows[:1]) is None
    with pytest.raises(ValueError, match="10 columns"):
        corpus_bleu(rows[:, :8])  # rows of another n
    assert bleu_stderr(np.repeat(rows[:1], 5, axis=0)) == 0.0  # every resample is the same corpus


def test_aggregate_caption_reports_bleu_with_its_stderr_in_the_table():
    from xgenmm.eval.metrics import bleu_statistics, bleu_stderr

    cap = get_task("world_caption")
    samples = {str(i): Sample(str(i), [], None, [f"a red circle at the top {i % 4}", "a red circle"]) for i in range(12)}
    records = [score_sample(cap, s, "a red circle" if i % 2 else "a blue square") for i, s in enumerate(samples.values())]
    m = aggregate(cap, records, samples)
    preds = {r["id"]: r["answer"] for r in records}
    rows, _ = bleu_statistics(preds, {k: s.answers for k, s in samples.items()})
    assert m["bleu4_stderr"] == bleu_stderr(rows) > 0
    table = markdown_table([{"task": "world_caption", "shots": 0, "scored": 12, "skipped": {}, "main_metric": "cider",
                             "samples_per_s": None, "metrics": m}])
    assert f"bleu4 {m['bleu4']:.4f} ± {m['bleu4_stderr']:.4f}" in table
