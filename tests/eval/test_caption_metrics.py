"""The Java-free PTB tokenizer, CIDEr-D and BLEU against the COCO caption evaluation."""

import json
import math
from pathlib import Path

import pytest

from xgenmm.eval.metrics import bleu, cider, ptb_tokenize

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("text, expected", [
    ("A man riding a wave on top of a surfboard.", "a man riding a wave on top of a surfboard"),
    ("Don't do it, it's the dog's bone!", "do n't do it it 's the dog 's bone"),
    ("I can't, won't", "i ca n't wo n't"),
    ("cannot gonna", "can not gon na"),
    ("Mr. Smith in the U.S. today.", "mr. smith in the u.s. today"),
    ("He said \"hello\" and 'bye'.", "he said hello and bye"),
    ("3.5 1,000 $5 50%", "3.5 1,000 $ 5 50 %"),
    ("well-known and/or e-mail", "well-known and/or e-mail"),
    ("wait... what -- really", "wait what really"),
])
def test_ptb_tokenizer_common_cases(text, expected):
    assert ptb_tokenize(text) == expected


def test_ptb_brackets_survive_as_lowercased_escapes():
    # QUIRK: -lowerCase turns -LRB- into -lrb-, which pycocoevalcap's list (upper case) misses
    assert ptb_tokenize("A (small) [red] {cat}") == "a -lrb- small -rrb- -lsb- red -rsb- -lcb- cat -rcb-"


def test_ptb_single_letter_period_splits_only_before_a_sentence_starter():
    assert ptb_tokenize("plan A. Cat") == "plan a. cat"
    assert ptb_tokenize("plan A. The cat") == "plan a the cat"


def test_ptb_repeated_marks_are_not_removed():
    assert ptb_tokenize("wow!! really?!") == "wow !! really ?!"


def test_ptb_matches_stanford_3_4_1_on_recorded_cases():
    data = json.loads((DATA / "ptb_tokenizer_cases.json").read_text(encoding="utf-8"))
    wrong = [(a, b, ptb_tokenize(a)) for a, b in data["cases"] if ptb_tokenize(a) != b]
    assert not wrong, wrong[:5]


def test_cider_and_bleu_match_pycocoevalcap_on_recorded_corpus():
    d = json.loads((DATA / "coco_caption_scores.json").read_text())
    score, per_id = cider(d["predictions"], d["references"])
    assert score == pytest.approx(d["cider"], abs=1e-12)
    for k, v in d["cider_per_id"].items():
        assert per_id[k] == pytest.approx(v, abs=1e-12)
    b4, b_per_id = bleu(d["predictions"], d["references"])
    assert b4 == pytest.approx(d["bleu"][3], abs=1e-12)
    for k, v in d["bleu4_per_id"].items():
        assert b_per_id[k] == pytest.approx(v, abs=1e-12)


def test_cider_of_a_one_image_corpus_is_zero():
    # idf = log(#images) - log(df) is 0 for every n-gram when there is one image
    score, _ = cider({1: "a dog runs"}, {1: ["a dog runs"]})
    assert score == 0.0


def test_cider_identical_captions_over_disjoint_images_score_ten():
    # every n-gram has df 1 -> weight log(2); cosine 1; no length penalty; x10
    preds = {1: "a red bus on the road", 2: "two cats sleep inside"}
    refs = {1: ["a red bus on the road"], 2: ["two cats sleep inside"]}
    score, per_id = cider(preds, refs)
    assert score == pytest.approx(10.0)


def test_cider_scores_only_the_ngram_levels_a_caption_has():
    # a one-word caption has only a unigram vector: 10 * (1 + 0 + 0 + 0) / 4
    _, per_id = cider({1: "dog", 2: "cat sat"}, {1: ["dog"], 2: ["cat sat"]})
    assert per_id[1] == pytest.approx(2.5)


def test_cider_needs_the_same_ids():
    with pytest.raises(ValueError, match="same ids"):
        cider({1: "a"}, {2: ["a"]})


def test_bleu_of_an_exact_copy_is_one():
    b, per = bleu({1: "a man rides a horse on a beach"}, {1: ["a man rides a horse on a beach"]})
    assert b == pytest.approx(1.0, abs=1e-6)


def test_bleu_brevity_penalty_from_the_closest_reference():
    # candidate of 4 words, references of 8 and 3: closest is 3 (|4-3| < |4-8|) -> no penalty
    refs = {1: ["w x y z one two three four", "a b c"]}
    b, _ = bleu({1: "a b c d"}, refs, n=1)
    assert b == pytest.approx(3 / 4, rel=1e-6)
    # reference of 8 only: penalty exp(1 - 8/4)
    b, _ = bleu({1: "a b c d"}, {1: ["a b c x y z u v"]}, n=1)
    assert b == pytest.approx(3 / 4 * math.exp(1 - 2), rel=1e-6)
