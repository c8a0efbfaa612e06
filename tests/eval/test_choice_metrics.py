"""Multiple choice, relaxed accuracy, POPE and grounding metrics."""

import pytest

from xgenmm.eval.metrics import (box_iou, extract_choice, grounding_accuracy, mc_accuracy, parse_box, pope_answer,
                                 pope_scores, relaxed_accuracy)

OPTS = ["a red circle", "a blue square", "a green star", "nothing"]


@pytest.mark.parametrize("text, letter", [
    ("B", "B"), ("B.", "B"), ("(C)", "C"), ("D) nothing", "D"), ("Answer: A", "A"),
    ("The answer is (B).", "B"), ("I think the answer is C", "C"), ("a blue square", "B"),
    ("It shows a green star.", "C"),
    # "is" and a colon together, and Markdown emphasis, as chat models write them
    ("The answer is: B", "B"), ("Answer is: C", "C"), ("My answer is: B.", "B"), ("**B**", "B"),
    ("The answer is **D**", "D"), ("Answer: **C**", "C"),
])
def test_extract_choice_reads_letters_and_option_text(text, letter):
    assert extract_choice(text, OPTS) == letter


@pytest.mark.parametrize("text", ["", "I am not sure", "E", "a red circle or a blue square"])
def test_extract_choice_returns_none_when_unparseable(text):
    assert extract_choice(text, OPTS) is None


def test_extract_choice_lowercase_a_is_an_article_not_option_a():
    assert extract_choice("a cat", ["dog", "mouse"]) is None


def test_extract_choice_prefers_the_longer_option_it_contains():
    assert extract_choice("a black cat", ["cat", "black cat"]) == "B"


def test_mc_accuracy_counts_unparseable_answers_as_wrong():
    r = mc_accuracy(["A", "no idea", "B"], ["A", "B", "A"], [OPTS, OPTS, OPTS])
    assert r == {"accuracy": pytest.approx(1 / 3), "unparseable": 1, "count": 3}


def test_relaxed_accuracy_allows_five_percent():
    assert relaxed_accuracy("10.5", "10") == 1.0
    assert relaxed_accuracy("10.6", "10") == 0.0
    assert relaxed_accuracy("12%", "0.12") == 1.0
    assert relaxed_accuracy("Yes", "yes") == 1.0


def test_relaxed_accuracy_zero_target_compares_strings():
    # QUIRK (pix2struct): a 0 target is falsy, so "0.0" vs "0" is a string mismatch
    assert relaxed_accuracy("0.0", "0") == 0.0
    assert relaxed_accuracy("0", "0") == 1.0


@pytest.mark.parametrize("text, answer", [
    ("Yes", "yes"), ("Yes, there is a dog.", "yes"), ("No.", "no"), ("There is not a dog", "no"),
    ("Yes. No.", "yes"), ("I don't know", "yes"), ("NO", "yes"),
])
def test_pope_answer_follows_llava_rules(text, answer):
    # first sentence only; "No"/"no"/"not" as a word means no; anything else is yes ("NO" too)
    assert pope_answer(text) == answer


def test_pope_scores_from_counts():
    preds = ["yes", "yes", "no", "no", "yes"]
    labels = ["yes", "no", "no", "yes", "yes"]  # tp 2, fp 1, tn 1, fn 1
    s = pope_scores(preds, labels)
    assert s["accuracy"] == pytest.approx(3 / 5)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3)
    assert s["yes_ratio"] == pytest.approx(3 / 5)


def test_pope_scores_rejects_bad_labels():
    with pytest.raises(ValueError, match="'maybe'"):
        pope_scores(["yes"], ["maybe"])


def test_box_iou():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
    assert box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0


def test_parse_box_scales_normalised_coordinates_to_pixels():
    assert parse_box("<bbox>0.10, 0.20, 0.50, 0.60</bbox>", 100, 200) == pytest.approx([10, 40, 50, 120])
    assert parse_box("[12, 30, 40, 64]", 100, 100) == [12, 30, 40, 64]
    assert parse_box("starts at (0.1, 0.2) and extends up to (0.3, 0.4)", 10, 10) == pytest.approx([1, 2, 3, 4])
    assert parse_box("somewhere on the left", 10, 10) is None


def test_grounding_accuracy_at_iou_half():
    targets = [[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]]
    preds = [[0, 0, 10, 5], [0, 0, 10, 4.9], None]  # IoU 0.5 counts, 0.49 does not, None is wrong
    assert grounding_accuracy(preds, targets) == pytest.approx(1 / 3)
