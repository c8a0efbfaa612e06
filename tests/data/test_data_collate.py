"""Batches: right padding, packing with isolated segments and a per-row image budget, DPO
pairs kept together, grouping; and the loss on a packed batch equals the loss unpacked."""

from __future__ import annotations

import torch

from xgenmm.data import (BatchConfig, Batcher, Conversation, EncodeConfig, Encoder, ImageRef, Turn, pack_batch,
                         pad_batch)
from xgenmm.data.collate import pack_rows
from xgenmm.data.encode import IGNORE_INDEX
from xgenmm.data.samples import PreferenceSample


def conv(i, q, a, images=()):
    n = len(images)
    text = "".join("<image>\n" for _ in range(n)) + q
    return Conversation(f"c{i}", [Turn("user", text), Turn("assistant", a)], [ImageRef(path=str(p)) for p in images])


def samples(processor, image_dir):
    enc = Encoder(processor, EncodeConfig(max_length=512))
    items = [
        conv(0, "what colour is the circle?", "red", [image_dir / "img0.png"]),
        conv(1, "how many shapes are there?", "two"),
        conv(2, "describe the image", "a yellow star and a purple cross", [image_dir / "img2.png", image_dir / "img1.png"]),
        conv(3, "is there a green triangle?", "no", [image_dir / "img3.png"]),
    ]
    out = [enc.encode(c) for c in items]
    for i, e in enumerate(out):
        e.position = i
    return out


def test_padding_is_on_the_right_with_ignored_labels(processor, image_dir):
    s = samples(processor, image_dir)
    b = pad_batch(s, processor.pad_token_id)
    short = min(range(len(s)), key=lambda i: len(s[i].input_ids))
    n = len(s[short].input_ids)
    assert (b["input_ids"][short, n:] == processor.pad_token_id).all()
    assert (b["attention_mask"][short, :n] == 1).all() and (b["attention_mask"][short, n:] == 0).all()
    assert (b["labels"][short, n:] == IGNORE_INDEX).all()


def test_pixel_values_follow_the_tags_row_by_row(processor, image_dir):
    s = samples(processor, image_dir)
    b = pad_batch(s, processor.pad_token_id)
    assert b["image_sizes"] == [(100, 60), (64, 64), (60, 100), (130, 120)]
    assert int((b["input_ids"] == processor.image_token_id).sum()) == len(b["pixel_values"])


def test_packed_rows_have_segments_restarting_per_sample(processor, image_dir):
    s = samples(processor, image_dir)
    b = pack_batch([s[:2], s[2:]], processor.pad_token_id)
    seg = b["segment_ids"]
    n0, n1 = len(s[0].input_ids), len(s[1].input_ids)
    assert (seg[0, :n0] == 1).all() and (seg[0, n0:n0 + n1] == 2).all() and (seg[0, n0 + n1:] == 0).all()
    # The first token of each packed sample is never a target (it would be predicted across samples).
    assert b["labels"][0, n0] == IGNORE_INDEX
    assert b["sample_ids"] == [["c0", "c1"], ["c2", "c3"]]


def test_pack_rows_respects_length_and_image_budget(processor, image_dir):
    s = samples(processor, image_dir)
    longest = max(e.length for e in s)
    rows = pack_rows(list(s), 8, max_length=sum(e.length for e in s), max_images=2)
    assert all(sum(e.num_images for e in r) <= 2 or len(r) == 1 for r in rows)
    rows = pack_rows(list(s), 8, max_length=longest)
    assert all(sum(e.length for e in r) <= longest for r in rows)
    assert sorted(e.id for r in rows for e in r) == ["c0", "c1", "c2", "c3"]


def test_loss_on_a_packed_batch_equals_the_loss_unpacked(processor, image_dir, tiny_model):
    s = samples(processor, image_dir)
    pad = pad_batch(s, processor.pad_token_id)
    packed = pack_batch([[s[0], s[1], s[3]], [s[2]]], processor.pad_token_id)
    keys = ("input_ids", "attention_mask", "pixel_values", "image_sizes", "labels")
    with torch.no_grad():
        a = tiny_model(**{k: pad[k] for k in keys}, return_logits=False).loss
        b = tiny_model(**{k: packed[k] for k in keys}, segment_ids=packed["segment_ids"], return_logits=False).loss
    assert torch.allclose(a, b, atol=1e-5), (a, b)


def test_batcher_groups_by_modality(processor, image_dir):
    s = samples(processor, image_dir)
    batcher = Batcher(BatchConfig(batch_size=2, group_by_modality=True), 512, processor.pad_token_id)
    out = [b for e in s for b in batcher.push(e)] + list(batcher.flush())
    assert [b["sample_ids"] for b in out] == [["c0", "c3"], ["c2"], ["c1"]]


def test_dpo_batch_keeps_chosen_and_rejected_in_adjacent_rows(processor, image_dir):
    enc = Encoder(processor)
    pairs = [enc.encode(PreferenceSample(f"p{i}", [Turn("user", "<image>\nwhat colour?")],
                                         [ImageRef(path=str(image_dir / f"img{i}.png"))], "red", "blue"))
             for i in range(2)]
    batcher = Batcher(BatchConfig(batch_size=2), 512, processor.pad_token_id)
    (b,) = [x for p in pairs for x in batcher.push(p)]
    assert b["num_pairs"] == 2 and b["input_ids"].shape[0] == 4
    assert b["sample_ids"] == ["p0", "p0", "p1", "p1"]
    assert b["image_sizes"] == [(100, 60), (100, 60), (60, 100), (60, 100)]
