"""Splicing image tokens into the text stream: counts, positions, conventions, errors."""

import pytest
import torch

from xgenmm.model.fusion import IGNORE_INDEX, fuse, segment_attention_mask, segment_positions

IMG, PH = 50, 51


def run(ids, n_per_image, mask=None, labels=None, segments=None):
    ids = torch.tensor(ids)
    mask = torch.ones_like(ids) if mask is None else torch.tensor(mask)
    text = torch.arange(ids.numel() * 2, dtype=torch.float).view(*ids.shape, 2)
    img = -torch.arange(1, sum(n_per_image) + 1, dtype=torch.float)[:, None].expand(-1, 2)
    lab = None if labels is None else torch.tensor(labels)
    seg = None if segments is None else torch.tensor(segments)
    return fuse(ids, mask, text, img, n_per_image, IMG, PH, labels=lab, segment_ids=seg)


def test_instruct_tag_expands_to_the_images_tokens():
    f = run([[1, IMG, 2, 3]], [4])
    assert f.inputs_embeds.shape == (1, 7, 2)
    assert f.image_mask[0].tolist() == [False, True, True, True, True, False, False]
    assert f.inputs_embeds[0, 1:5, 0].tolist() == [-1, -2, -3, -4]
    assert f.inputs_embeds[0, 5, 0].item() == 4.0  # text token 2 shifted by 3 positions


def test_base_placeholders_are_overwritten_in_place():
    f = run([[1, IMG, PH, PH, 2]], [3])
    assert f.inputs_embeds.shape == (1, 5, 2)
    assert f.inputs_embeds[0, 1:4, 0].tolist() == [-1, -2, -3]


def test_images_follow_tag_order_row_by_row_and_rows_are_right_padded():
    f = run([[IMG, 1, IMG], [2, IMG, 0]], [2, 1, 4], mask=[[1, 1, 1], [1, 1, 0]])
    assert f.inputs_embeds.shape == (2, 5, 2)
    assert f.inputs_embeds[0, :2, 0].tolist() == [-1, -2] and f.inputs_embeds[0, 3, 0].item() == -3
    assert f.inputs_embeds[1, 1:5, 0].tolist() == [-4, -5, -6, -7]
    assert f.attention_mask.tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]


def test_text_padding_takes_no_fused_position():
    # Row 1 is padded to the input length, but after splicing it is the longer row: the fused
    # batch is as long as the longest real row, not the input length plus images.
    f = run([[IMG, 1, 2, 3], [4, IMG, 0, 0]], [1, 3], mask=[[1, 1, 1, 1], [1, 1, 0, 0]])
    assert f.inputs_embeds.shape == (2, 4, 2)
    assert f.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 1]]


def test_an_image_tag_in_the_padding_is_an_error():
    with pytest.raises(ValueError, match="sample 0: an <image> tag sits at a padding position"):
        run([[1, 2, IMG]], [1], mask=[[1, 1, 0]])


def test_left_padding_stays_left():
    f = run([[0, 0, IMG, 1], [IMG, 1, 2, 3]], [3, 3], mask=[[0, 0, 1, 1], [1, 1, 1, 1]])
    assert f.attention_mask[0].tolist() == [0, 0, 1, 1, 1, 1]
    assert f.position_ids[0, 2:].tolist() == [0, 1, 2, 3]


def test_labels_are_ignored_on_image_tokens():
    f = run([[1, IMG, 2]], [2], labels=[[IGNORE_INDEX, IGNORE_INDEX, 2]])
    assert f.labels.tolist() == [[IGNORE_INDEX] * 3 + [2]]


def test_more_tags_than_images_names_the_counts():
    with pytest.raises(ValueError, match=r"2 <image> tags \(per sample: \[1, 1\]\) but 1 images"):
        run([[IMG, 1], [IMG, 2]], [3])


def test_wrong_placeholder_count_names_the_sample():
    with pytest.raises(ValueError, match="sample 1: image 1 has <image> \\+ 1 placeholders"):
        run([[IMG, PH, PH, 1], [1, IMG, PH, 2]], [3, 3])


def test_stray_placeholder_names_the_sample():
    with pytest.raises(ValueError, match="sample 0: <image placeholder> not directly after"):
        run([[1, PH, IMG]], [1])


def test_segments_restart_positions_and_isolate_attention():
    seg = torch.tensor([[1, 1, 1, 2, 2, 0]])
    assert segment_positions(seg).tolist() == [[0, 1, 2, 0, 1, 0]]
    m = segment_attention_mask(seg)[0, 0]
    assert m[4].tolist() == [False, False, False, True, True, False]
    assert m[2].tolist() == [True, True, True, False, False, False]
    assert m[5].tolist() == [False] * 5 + [True]


def test_image_tokens_take_their_tags_segment():
    f = run([[1, IMG, 2, IMG]], [2, 2], segments=[[1, 1, 2, 2]])
    assert f.segment_ids.tolist() == [[1, 1, 1, 2, 2, 2]]
    assert f.position_ids.tolist() == [[0, 1, 2, 0, 1, 2]]
