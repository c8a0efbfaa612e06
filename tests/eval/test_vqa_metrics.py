"""VQA accuracy and ANLS against cases worked out from the official scripts."""

import json
from pathlib import Path

import pytest

from xgenmm.eval.metrics import anls, normalize_vqa_answer, vqa_accuracy
from xgenmm.eval.metrics.vqa import process_punctuation

DATA = Path(__file__).parent / "data"


def test_two_of_ten_humans_give_0_6():
    # leave-one-out: the 2 subsets without a matching human have 1 match (1/3), the other
    # 8 have 2 (2/3): (2/3 + 16/3) / 10 = 0.6
    answers = ["dog", "dog"] + ["cat"] * 8
    assert vqa_accuracy("dog", answers) == pytest.approx(0.6)


def test_three_of_ten_humans_give_0_9():
    answers = ["dog"] * 3 + ["cat"] * 7  # (3 * 2/3 + 7 * 1) / 10
    assert vqa_accuracy("dog", answers) == pytest.approx(0.9)


def test_four_matching_humans_give_full_credit():
    assert vqa_accuracy("dog", ["dog"] * 4 + ["cat"] * 6) == 1.0


def test_leave_one_out_drops_one_record_not_all_equal_strings():
    # comparing strings instead of answer records would leave 0 matches in every subset
    assert vqa_accuracy("yes", ["yes"] * 10) == 1.0


def test_number_words_and_articles_are_normalised_in_the_prediction():
    assert normalize_vqa_answer("Two dogs") == "2 dogs"
    assert normalize_vqa_answer("the cat") == "cat"
    assert normalize_vqa_answer("None") == "0"


def test_identical_human_answers_are_compared_unprocessed():
    # QUIRK of vqaEval.py: with ten identical answers the ground truth is not normalised
    assert vqa_accuracy("2", ["two"] * 10) == 0.0
    assert vqa_accuracy("two", ["2"] * 10) == 1.0


def test_apostrophe_becomes_space_so_identical_contraction_answers_miss():
    # "don't" -> "don t" in the prediction; identical answers stay "don't"
    assert vqa_accuracy("don't", ["don't"] * 10) == 0.0
    # when humans disagree their answers get the same punctuation treatment
    assert vqa_accuracy("don't", ["don't"] * 9 + ["no"]) == 1.0


def test_contraction_map_restores_apostrophe_free_words():
    assert normalize_vqa_answer("dont") == "don\u2019t"


def test_comma_between_digits_deletes_all_punctuation():
    assert process_punctuation("1,000") == "1000"
    assert process_punctuation("1,000 a/b") == "1000 ab"  # "/" removed, not spaced
    assert process_punctuation("a/b") == "a b"
    assert process_punctuation("a , b") == "a  b"  # " ," present: removed


def test_period_strip_keeps_decimals_and_drops_other_periods():
    assert process_punctuation("3.5") == "3.5"
    assert process_punctuation("yes.") == "yes"
    assert process_punctuation("5. apples") == "5 apples"  # the look-behind typo: digit before does not protect


def test_period_strip_removes_at_most_32_periods():
    # QUIRK: re.UNICODE (32) lands in sub()'s count argument
    assert process_punctuation("." * 40) == "." * 8


def test_prediction_whitespace_is_collapsed():
    assert vqa_accuracy(" red\n", ["red"] * 10) == 1.0


def test_matches_official_vqaeval_on_recorded_cases():
    cases = json.loads((DATA / "vqa_accuracy_cases.json").read_text())["cases"]
    for pred, answers, expected in cases:
        assert vqa_accuracy(pred, answers) == pytest.approx(expected), (pred, answers)


def test_empty_answer_list_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        vqa_accuracy("x", [])


def test_anls_exact_match_ignoring_case_and_spaces():
    assert anls("  Hello   World ", ["hello world"]) == 1.0


def test_anls_keeps_similarity_at_the_threshold():
    assert anls("abxy", ["abcd"]) == pytest.approx(0.5)  # distance 2 of 4: exactly 0.5 is kept


def test_anls_zeroes_similarity_below_the_threshold():
    assert anls("axyz", ["abcd"]) == 0.0  # 1 - 3/4 = 0.25


def test_anls_takes_the_best_answer():
    assert anls("abcd", ["zzzz", "abce"]) == pytest.approx(0.75)


def test_anls_denominator_uses_raw_lengths():
    # normalised "a b" vs "a c": distance 1; QUIRK: length max(len("a c"), len("a  b")) = 4
    assert anls("a  b", ["a c"]) == pytest.approx(0.75)
