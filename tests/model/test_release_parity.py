"""An imported released checkpoint computes what the released code computed, on the
fixtures that code wrote (fp32, relative error <= 1e-5; ids, masks and pixels exact)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import RELEASE_FIXTURES as F
from xgenmm.model import XGenMM
from xgenmm.model.convert import import_release
from xgenmm.model.image_processing import XGenMMImageProcessor

TOL = 1e-5


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours - ref).abs().max() / ref.abs().max()).item()


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("imported")
    import_release(F / "checkpoint", out)
    return XGenMM.from_pretrained(out), out


@pytest.fixture(scope="module")
def case_a():
    return load_file(F / "case_a_base_fixed_res.safetensors")


@pytest.fixture(scope="module")
def case_b():
    return load_file(F / "case_b_instruct_anyres_2x2.safetensors")


def grids():
    return json.loads((F / "fixtures_common.json").read_text())["anyres_grids"]


def test_squash_pixels_are_bit_exact(case_a):
    ours = XGenMMImageProcessor(42, "squash").preprocess_one(F / "image_a.png")
    assert torch.equal(ours, case_a["pixel_values"][0, 0])


def test_anyres_crops_are_bit_exact(case_b):
    ours = XGenMMImageProcessor(42, "anyres", grids()).preprocess_one(F / "image_b.png")
    assert torch.equal(ours, case_b["crops_s0_i0"])


def test_imported_config_matches_the_release(imported):
    model, _ = imported
    c = model.config
    assert (c.tokens.image_token_id, c.tokens.placeholder_token_id, c.tokens.endofchunk_token_id) == (100, 101, 102)
    assert c.tokens.vocab_size == 103 and c.tokens.release_vocab_rows == 128
    assert (c.resampler.num_latents, c.resampler.depth, c.resampler.heads, c.resampler.dim_head) == (12, 6, 16, 96)
    assert c.image.mode == "anyres" and c.image.token_grouping == "release"


def test_vision_features_match(imported, case_b):
    model, _ = imported
    assert rel_err(model.vision_encoder(case_b["crops_s0_i0"]), case_b["vision_features"]) <= TOL


def test_release_token_grouping_and_masks_match(imported, case_b):
    from xgenmm.model.anyres import group_index, group_mask

    feats = case_b["vision_features"]
    flat = feats[1:].reshape(-1, feats.shape[-1])
    groups = flat[group_index(2, 2, 3, "release")]
    assert torch.equal(groups, case_b["resampler_input"][1:])
    assert torch.equal(group_mask((100, 80), 2, 2, 3, "release"), case_b["resampler_mask"][1:])


def test_resampler_output_matches(imported, case_b):
    model, _ = imported
    out = model.vision_tokenizer(case_b["resampler_input"], case_b["resampler_mask"])
    assert rel_err(out, case_b["resampler_output"]) <= TOL


def test_instruct_anyres_logits_loss_and_fused_labels_match(imported, case_b):
    model, _ = imported
    size = [tuple(case_b["image_size_s0"][0].tolist())]
    out = model(case_b["input_ids"], case_b["attention_mask"], [case_b["crops_s0_i0"]], size, labels=case_b["labels"])
    assert out.logits.shape == case_b["logits"].shape
    assert rel_err(out.logits, case_b["logits"]) <= TOL
    assert abs(out.loss.item() - case_b["loss"].item()) <= TOL * abs(case_b["loss"].item())
    assert torch.equal(out.labels, case_b["fused_labels"])
    assert torch.equal(out.attention_mask, case_b["fused_attention_mask"])
    fused = model.fuse_inputs(case_b["input_ids"], case_b["attention_mask"], [case_b["crops_s0_i0"]], size)
    assert rel_err(fused.inputs_embeds, case_b["inputs_embeds"]) <= TOL


def test_instruct_anyres_greedy_generation_matches(imported, case_b):
    model, _ = imported
    size = [tuple(case_b["image_size_s0"][0].tolist())]
    ids, logits = model.generate(case_b["input_ids"], case_b["attention_mask"], [case_b["crops_s0_i0"]], size,
                                 max_new_tokens=8, output_logits=True)
    assert torch.equal(ids, case_b["generated_ids"])
    assert rel_err(logits, case_b["generation_logits"]) <= TOL


def test_base_convention_logits_and_generation_match(imported, case_a):
    model, _ = imported
    pix = [case_a["pixel_values"][0, 0]]
    out = model(case_a["input_ids"], case_a["attention_mask"], pix, [(90, 60)])
    assert rel_err(out.logits, case_a["logits"]) <= TOL
    fused = model.fuse_inputs(case_a["input_ids"], case_a["attention_mask"], pix, [(90, 60)])
    assert rel_err(fused.inputs_embeds, case_a["inputs_embeds"]) <= TOL
    assert torch.equal(fused.attention_mask, case_a["fused_attention_mask"])
    ids, logits = model.generate(case_a["input_ids"], case_a["attention_mask"], pix, [(90, 60)], max_new_tokens=8,
                                 output_logits=True)
    assert torch.equal(ids, case_a["generated_ids"])
    assert rel_err(logits, case_a["generation_logits"]) <= TOL
