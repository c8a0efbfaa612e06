"""Padding-free attention (model/attention.py): the training forward without padding gives
the padded forward's loss and gradients; sequences stay isolated; batches it cannot flatten
exactly take the masked path; the one-query decoding path equals SDPA."""

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from tests.conftest import make_image
from xgenmm.model import XGenMM, XGenMMConfig
from xgenmm.model.attention import ATTENTION, flatten_segments, varlen_sdpa_attention


def batch(processor, padding_side="right"):
    msgs = [
        ("<image>\nwhat colour is the circle?", "red", [make_image(90, 60, 1)]),
        ("how many shapes are there?", "three", []),
        ("<image>\n<image>\nis there a green triangle?", "no", [make_image(40, 120, 2), make_image(64, 64, 3)]),
    ]
    texts, images = [], []
    for q, a, ims in msgs:
        texts.append(processor.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": a}]))
        images.append(ims)
    out = processor(texts, images, padding_side=padding_side)
    labels = out["input_ids"].clone()
    labels[out["attention_mask"] == 0] = -100
    labels[:, :5] = -100
    return out, labels


def loss_and_grads(model, inputs, labels, unpadded: bool):
    model.zero_grad(set_to_none=True)
    if unpadded:
        out = model(**inputs, labels=labels, return_logits=False)
    else:
        # The masked path: the same call, with the padding-free route turned off.
        original = model._unpadded_hidden
        model._unpadded_hidden = lambda fused: None
        try:
            out = model(**inputs, labels=labels, return_logits=False)
        finally:
            model._unpadded_hidden = original
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.loss.detach(), grads


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_unpadded_forward_gives_the_padded_loss_and_gradients(tiny_model, tiny_processor, padding_side):
    tiny_model.train()
    inputs, labels = batch(tiny_processor, padding_side)
    fused = tiny_model.fuse_inputs(**inputs, labels=labels)
    assert not bool(fused.attention_mask.all())  # the batch has padding to drop
    assert tiny_model._unpadded_hidden(fused) is not None  # and the padding-free route takes it
    loss_u, grads_u = loss_and_grads(tiny_model, inputs, labels, True)
    loss_p, grads_p = loss_and_grads(tiny_model, inputs, labels, False)
    assert torch.allclose(loss_u, loss_p, atol=1e-5, rtol=1e-5)
    assert grads_u.keys() == grads_p.keys() and len(grads_u) > 10
    for name in grads_u:
        assert torch.allclose(grads_u[name], grads_p[name], atol=1e-5, rtol=1e-4), name


def test_unpadded_hidden_states_match_on_real_positions_and_are_zero_on_padding(tiny_model, tiny_processor):
    inputs, labels = batch(tiny_processor)
    fused = tiny_model.fuse_inputs(**inputs, labels=labels)
    with torch.no_grad():
        flat = tiny_model._unpadded_hidden(fused)
        padded = tiny_model.lang_model.get_decoder()(inputs_embeds=fused.inputs_embeds, attention_mask=fused.attention_mask,
                                                     position_ids=fused.position_ids).last_hidden_state
    real = fused.attention_mask.bool()
    assert torch.allclose(flat[real], padded[real], atol=1e-5)
    assert bool((flat[~real] == 0).all())


def test_packed_segments_stay_isolated(tiny_model):
    """Two sequences packed in one row give what each gives alone in its own row."""
    torch.manual_seed(1)
    vocab = tiny_model.config.tokens.initial_tokenizer_len - 1
    a, b = torch.randint(3, vocab, (7,)), torch.randint(3, vocab, (5,))
    packed = torch.cat((a, b))[None]
    segments = torch.tensor([[1] * 7 + [2] * 5])
    labels = packed.clone()
    with torch.no_grad():
        fused = tiny_model.fuse_inputs(packed, torch.ones_like(packed), labels=labels, segment_ids=segments)
        hidden = tiny_model._unpadded_hidden(fused)
        decoder = tiny_model.lang_model.get_decoder()
        alone_a = decoder(inputs_embeds=tiny_model.lang_model.get_input_embeddings()(a)[None]).last_hidden_state[0]
        alone_b = decoder(inputs_embeds=tiny_model.lang_model.get_input_embeddings()(b)[None]).last_hidden_state[0]
    assert torch.allclose(hidden[0, :7], alone_a, atol=1e-5)
    assert torch.allclose(hidden[0, 7:], alone_b, atol=1e-5)


def test_flatten_segments_finds_rows_and_packed_segments():
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1], [1, 1, 1, 1]])
    segs = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1], [1, 1, 2, 2]])
    flat, bounds = flatten_segments(mask, segs)
    assert flat.tolist() == [0, 1, 2, 5, 6, 7, 8, 9, 10, 11]
    assert bounds == [(0, 3), (3, 6), (6, 8), (8, 10)]
    flat, bounds = flatten_segments(mask, None)
    assert bounds == [(0, 3), (3, 6), (6, 10)]


def test_batches_that_cannot_be_flattened_exactly_take_the_masked_path():
    # A hole inside a row: its two halves are one sequence, not contiguous.
    assert flatten_segments(torch.tensor([[1, 0, 1, 1]]), None) is None
    # A segment that comes back after another one.
    assert flatten_segments(torch.tensor([[1, 1, 1, 1]]), torch.tensor([[1, 2, 1, 1]])) is None
    # A sequence longer than the sliding window.
    assert flatten_segments(torch.ones(1, 6, dtype=torch.long), None, max_length=5) is None
    assert flatten_segments(torch.ones(1, 5, dtype=torch.long), None, max_length=5) is not None


def test_an_lm_with_grouped_query_attention_gets_the_same_loss(tiny_config, tiny_processor):
    d = tiny_config.to_dict()
    d["text"] = dict(d["text"], num_key_value_heads=2)
    torch.manual_seed(0)
    model = XGenMM(XGenMMConfig.from_dict(d)).train()
    assert model.lang_model.config._attn_implementation == ATTENTION
    inputs, labels = batch(tiny_processor)
    loss_u, grads_u = loss_and_grads(model, inputs, labels, True)
    loss_p, grads_p = loss_and_grads(model, inputs, labels, False)
    assert torch.allclose(loss_u, loss_p, atol=1e-5, rtol=1e-5)
    name = "lang_model.model.layers.0.self_attn.qkv_proj.weight"
    assert torch.allclose(grads_u[name], grads_p[name], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kv_heads", [4, 2])
@pytest.mark.parametrize("mask_kind", ["bool", "float", "none"])
def test_one_query_decoding_attention_equals_sdpa(kv_heads, mask_kind):
    torch.manual_seed(0)
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal = 4 // kv_heads, True
    q = torch.randn(3, 4, 1, 16)
    k, v = torch.randn(3, kv_heads, 9, 16), torch.randn(3, kv_heads, 9, 16)
    keep = torch.ones(3, 1, 1, 9, dtype=torch.bool)
    keep[0, ..., :4] = False  # left padding of row 0
    mask = {"bool": keep, "float": torch.zeros(keep.shape).masked_fill(~keep, float("-inf")), "none": None}[mask_kind]
    with torch.no_grad():
        ours, _ = varlen_sdpa_attention(module, q, k, v, mask, scaling=0.25)
    ref, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.25)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_row_logps_equal_the_full_logits_gathered(tiny_model, tiny_processor):
    inputs, labels = batch(tiny_processor)
    out = tiny_model(**inputs, labels=labels, return_logits=False, return_row_logps=True)
    full = tiny_model(**inputs, labels=labels, return_logits=True)
    logp = full.logits[:, :-1].float().log_softmax(-1)
    target = full.labels[:, 1:]
    keep = target != -100
    expected = (logp.gather(2, target.clamp(min=0)[..., None]).squeeze(-1) * keep).sum(1)
    assert out.logits is None and out.row_logps.shape == (3,)
    assert torch.allclose(out.row_logps, expected, atol=1e-4)
    out.row_logps.sum().backward()  # differentiable (DPO's policy pass)
    assert tiny_model.lang_model.get_output_embeddings().weight.grad is not None
    with pytest.raises(ValueError, match="needs labels"):
        tiny_model(**inputs, return_row_logps=True)


def test_no_mask_is_built_for_a_flattened_call_and_segments_reach_the_attention(tiny_model):
    """Inside `flattened(...)` the mask builder returns None (no [N, N] mask), and the
    attention gets the segments from the context even when no keyword argument carries them."""
    from transformers.masking_utils import AttentionMaskInterface

    from xgenmm.model.attention import flattened

    builder = AttentionMaskInterface._global_mapping[ATTENTION]
    kwargs = dict(batch_size=1, q_length=6, kv_length=6, allow_is_causal_skip=False)
    assert builder(**kwargs) is not None  # outside: the library's SDPA mask
    with flattened([(0, 2), (2, 6)]):
        assert builder(**kwargs) is None
    torch.manual_seed(0)
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal, module.training = 1, True, False
    q, k, v = (torch.randn(1, 2, 6, 8) for _ in range(3))
    with flattened([(0, 2), (2, 6)]):
        ours, _ = varlen_sdpa_attention(module, q, k, v, None)
    first = torch.nn.functional.scaled_dot_product_attention(q[:, :, :2], k[:, :, :2], v[:, :, :2], is_causal=True)
    second = torch.nn.functional.scaled_dot_product_attention(q[:, :, 2:], k[:, :, 2:], v[:, :, 2:], is_causal=True)
    assert torch.allclose(ours, torch.cat((first, second), 2).transpose(1, 2), atol=1e-6)
    with flattened([(0, 2), (3, 6)]), pytest.raises(ValueError, match="tile the row"):
        varlen_sdpa_attention(module, q, k, v, None)
