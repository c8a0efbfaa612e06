"""Samples to model inputs: labels right by construction (golden supervised texts), image
token accounting per convention, and the length policy that never cuts inside an image."""

from __future__ import annotations

import pytest
import torch

from xgenmm.data import CaptionSample, Conversation, EncodeConfig, Encoder, ImageRef, InterleavedSample, Turn
from xgenmm.data.encode import IGNORE_INDEX
from xgenmm.data.errors import NO_LABELS, TOO_LONG, SampleError, SkipStats
from xgenmm.data.samples import PreferenceSample


def supervised_runs(tok, enc) -> list[str]:
    """The decoded text of each contiguous run of supervised tokens."""
    runs, cur = [], []
    for t, y in zip(enc.input_ids.tolist(), enc.labels.tolist()):
        if y != IGNORE_INDEX:
            assert y == t
            cur.append(t)
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    if cur:
        runs.append(tok.decode(cur))
    return runs


def conv(turns, images=()):
    roles = ["user", "assistant"] * len(turns)
    return Conversation("c", [Turn(r, t) for r, t in zip(roles, turns)], [ImageRef(path=str(p)) for p in images])


GOLDEN = [
    (["what colour is the circle?", "red"], ["red<|end|>\n"]),
    (["how many shapes are there?", "two", "is there a green triangle?", "no"], ["two<|end|>\n", "no<|end|>\n"]),
    (["describe the image", "a yellow star and a purple cross"], ["a yellow star and a purple cross<|end|>\n"]),
    (["read the word", " the word is cat"], [" the word is cat<|end|>\n"]),
    (["where is the star?", "top left\nof the image"], ["top left\nof the image<|end|>\n"]),
    (["yes or no?", "yes", "why?", "the word is cat", "sure?", "yes"],
     ["yes<|end|>\n", "the word is cat<|end|>\n", "yes<|end|>\n"]),
]


@pytest.mark.parametrize("turns,expected", GOLDEN)
def test_supervised_tokens_decode_to_exactly_the_answers_and_end_tags(processor, turns, expected):
    enc = Encoder(processor).encode(conv(turns))
    assert supervised_runs(processor.tokenizer, enc) == expected


def test_system_user_and_assistant_prefix_are_never_supervised(processor):
    enc = Encoder(processor).encode(conv(["what colour is the circle?", "red"]))
    tok = processor.tokenizer
    sup_tokens = set(tok.convert_ids_to_tokens(enc.labels[enc.labels != IGNORE_INDEX].tolist()))
    assert not sup_tokens & {"<|system|>", "<|user|>", "<|assistant|>"}


def test_supervised_tokens_with_images_skip_the_image_tags(processor, image_dir):
    c = conv(["<image>\nwhat colour is the circle?", "red", "<image> and this one?", "blue"],
             [image_dir / "img0.png", image_dir / "img2.png"])
    enc = Encoder(processor).encode(c)
    assert supervised_runs(processor.tokenizer, enc) == ["red<|end|>\n", "blue<|end|>\n"]
    assert (enc.labels[enc.input_ids == processor.image_token_id] == IGNORE_INDEX).all()


def test_instruct_keeps_one_tag_per_image_and_counts_its_tokens(processor, image_dir):
    c = conv(["<image>\ndescribe the image", "a red circle"], [image_dir / "img3.png"])
    enc = Encoder(processor).encode(c)
    expect = processor.tokens_per_image((130, 120))
    assert int((enc.input_ids == processor.image_token_id).sum()) == 1
    assert enc.image_tokens == [expect]
    assert enc.length == len(enc.input_ids) + expect - 1
    assert enc.pixel_values[0].shape[0] * processor.image_tokens_per_crop == expect


def test_base_convention_writes_tag_and_placeholders_and_supervises_text_only(processor, image_dir):
    enc = Encoder(processor).encode(CaptionSample("cap", ImageRef(path=str(image_dir / "img2.png")), "a red circle"))
    T = processor.tokens_per_image((64, 64))
    ids = enc.input_ids
    assert ids[0] == processor.image_token_id
    assert (ids[1:T] == processor.placeholder_token_id).all() and ids[T] != processor.placeholder_token_id
    assert enc.length == len(ids)
    assert supervised_runs(processor.tokenizer, enc) == ["a red circle<|endofchunk|><|endoftext|>"]


def test_interleaved_document_closes_a_chunk_before_each_later_image(processor, image_dir):
    doc = InterleavedSample("doc", ["a red circle", ImageRef(path=str(image_dir / "img2.png")), "two"])
    enc = Encoder(processor).encode(doc)
    text = processor.tokenizer.decode(enc.input_ids[enc.input_ids != processor.placeholder_token_id])
    assert text == "a red circle<|endofchunk|><image>two<|endofchunk|><|endoftext|>"


def test_truncation_drops_the_image_that_does_not_fit_with_its_tag(processor, image_dir):
    c = conv(["<image>\nwhat colour?", "red", "<image> and this?", "blue " * 5],
             [image_dir / "img0.png", image_dir / "img3.png"])
    full = Encoder(processor, EncodeConfig(max_length=4096)).encode(c)
    second_tag = (full.input_ids == processor.image_token_id).nonzero()[1, 0].item()
    # Budget ends in the middle of the second image's tokens.
    budget = second_tag + full.image_tokens[0] - 1 + full.image_tokens[1] // 2
    stats = SkipStats()
    enc = Encoder(processor, EncodeConfig(max_length=budget), stats).encode(c)
    assert enc.truncated and enc.num_images == 1 and enc.image_tokens == full.image_tokens[:1]
    assert len(enc.input_ids) == second_tag and enc.length <= budget
    assert int((enc.input_ids == processor.image_token_id).sum()) == 1
    assert stats.repaired["truncated"] == 1


def test_base_truncation_never_ends_inside_a_placeholder_run(processor, image_dir):
    doc = InterleavedSample("doc", ["a red circle", ImageRef(path=str(image_dir / "img2.png")), "two three"])
    T = processor.tokens_per_image((64, 64))
    enc = Encoder(processor, EncodeConfig(max_length=5 + T // 2)).encode(doc)
    assert enc.num_images == 0 and processor.image_token_id not in enc.input_ids.tolist()
    assert processor.placeholder_token_id not in enc.input_ids.tolist()


def test_drop_policy_skips_a_sample_that_does_not_fit(processor, image_dir):
    c = conv(["<image>\nwhat colour?", "red"], [image_dir / "img3.png"])
    with pytest.raises(SampleError) as e:
        Encoder(processor, EncodeConfig(max_length=40, truncation="drop")).encode(c)
    assert e.value.reason == TOO_LONG


def test_truncating_away_every_answer_skips_the_sample(processor):
    c = conv(["describe the image " * 20, "red"])
    with pytest.raises(SampleError) as e:
        Encoder(processor, EncodeConfig(max_length=60)).encode(c)
    assert e.value.reason == NO_LABELS


def test_preference_pair_shares_prompt_and_images_and_supervises_each_answer(processor, image_dir):
    p = PreferenceSample("p", [Turn("user", "<image>\nwhat colour?")], [ImageRef(path=str(image_dir / "img0.png"))],
                         chosen="red", rejected="blue")
    pair = Encoder(processor).encode(p)
    tok = processor.tokenizer
    assert supervised_runs(tok, pair.chosen) == ["red<|end|>\n"]
    assert supervised_runs(tok, pair.rejected) == ["blue<|end|>\n"]
    assert torch.equal(pair.chosen.pixel_values[0], pair.rejected.pixel_values[0])


def test_a_multi_turn_preference_prompt_supervises_only_the_final_answers(processor, image_dir):
    """The prompt's earlier answers are prompt: neither DPO's log-ratio nor its NLL term
    (`dpo.sft_weight`) may score them, nor count them in the answer's length."""
    p = PreferenceSample("p", [Turn("user", "<image>\nwhat is in the image?"), Turn("assistant", "a yellow star"),
                               Turn("user", "how many shapes?")],
                         [ImageRef(path=str(image_dir / "img0.png"))], chosen="two", rejected="three")
    pair = Encoder(processor).encode(p)
    tok = processor.tokenizer
    assert supervised_runs(tok, pair.chosen) == ["two<|end|>\n"]
    assert supervised_runs(tok, pair.rejected) == ["three<|end|>\n"]


def test_missing_and_corrupt_images_are_sample_errors(processor, image_dir):
    for name, reason in (("nope.png", "missing_image"), ("corrupt.png", "bad_image")):
        with pytest.raises(SampleError) as e:
            Encoder(processor).encode(conv(["<image>\nq", "a"], [image_dir / name]))
        assert e.value.reason == reason and e.value.sample_id == "c"
