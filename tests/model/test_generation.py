"""Generation: the KV cache changes nothing, a batch gives what each sample gives alone,
rows stop on the end token, sampling is reproducible with a seed."""

import pytest
import torch

from tests.conftest import make_image


def prompts(processor):
    msgs = [
        ("<image>\nwhat colour is the circle?", [make_image(90, 60, 1)]),
        ("how many shapes are there?", []),
        ("<image>\n<image>\nis there a green triangle?", [make_image(40, 120, 2), make_image(64, 64, 3)]),
    ]
    return [(processor.apply_chat_template([{"role": "user", "content": t}]), ims) for t, ims in msgs]


def test_greedy_with_cache_equals_recomputing_without_it(tiny_model, tiny_processor):
    texts, images = zip(*prompts(tiny_processor))
    batch = tiny_processor(list(texts), list(images))
    with_cache = tiny_model.generate(**batch, max_new_tokens=8, eos_token_id=[])
    without = tiny_model.generate(**batch, max_new_tokens=8, eos_token_id=[], use_cache=False)
    assert with_cache.shape == (3, 8)
    assert torch.equal(with_cache, without)


def test_batch_gives_what_each_sample_gives_alone(tiny_model, tiny_processor):
    ps = prompts(tiny_processor)
    texts, images = zip(*ps)
    batched = tiny_model.generate(**tiny_processor(list(texts), list(images)), max_new_tokens=10, eos_token_id=[])
    for i, (t, ims) in enumerate(ps):
        alone = tiny_model.generate(**tiny_processor([t], [ims]), max_new_tokens=10, eos_token_id=[])
        assert torch.equal(batched[i], alone[0]), f"sample {i}"


def test_right_padded_prompts_generate_like_left_padded(tiny_model, tiny_processor):
    texts, images = zip(*prompts(tiny_processor))
    left = tiny_model.generate(**tiny_processor(list(texts), list(images), padding_side="left"), max_new_tokens=6, eos_token_id=[])
    right = tiny_model.generate(**tiny_processor(list(texts), list(images), padding_side="right"), max_new_tokens=6, eos_token_id=[])
    assert torch.equal(left, right)


def test_rows_stop_on_the_end_token_and_are_padded(tiny_model, tiny_processor):
    texts, images = zip(*prompts(tiny_processor))
    batch = tiny_processor(list(texts), list(images))
    free = tiny_model.generate(**batch, max_new_tokens=8, eos_token_id=[])
    stop = int(free[0, 2])  # make row 0's third token the end token
    out = tiny_model.generate(**batch, max_new_tokens=8, eos_token_id=stop)
    assert out[0, 2] == stop
    assert (out[0, 3:] == tiny_model.config.tokens.pad_token_id).all()


def test_sampling_is_reproducible_with_a_seed(tiny_model, tiny_processor):
    texts, images = zip(*prompts(tiny_processor))
    batch = tiny_processor(list(texts), list(images))
    kw = dict(max_new_tokens=6, do_sample=True, temperature=1.5, top_p=0.9, top_k=50, eos_token_id=[])
    a = tiny_model.generate(**batch, generator=torch.Generator().manual_seed(3), **kw)
    b = tiny_model.generate(**batch, generator=torch.Generator().manual_seed(3), **kw)
    c = tiny_model.generate(**batch, generator=torch.Generator().manual_seed(4), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_decoded_text_has_no_special_tokens(tiny_model, tiny_processor):
    texts, images = zip(*prompts(tiny_processor))
    out = tiny_model.generate(**tiny_processor(list(texts), list(images)), max_new_tokens=5)
    decoded = tiny_processor.batch_decode(out)
    assert len(decoded) == 3 and all("<pad>" not in d and "<|end|>" not in d for d in decoded)


def test_row_by_row_prefill_equals_the_padded_batch_prefill(tiny_model, tiny_processor):
    from transformers import DynamicCache

    from xgenmm.model.generation import _prefill

    texts, images = zip(*prompts(tiny_processor))
    fused = tiny_model.fuse_inputs(**tiny_processor(list(texts), list(images)))
    mask = fused.attention_mask
    assert mask.float().mean() < 0.85  # enough padding for the row-by-row path
    decoder = tiny_model.lang_model.get_decoder()
    new = lambda: DynamicCache(config=tiny_model.lang_model.config)  # noqa: E731
    with torch.no_grad():
        rows, rows_cache = _prefill(decoder, fused.inputs_embeds, mask, fused.position_ids, new)
        batch, batch_cache = _prefill(decoder, fused.inputs_embeds, mask, fused.position_ids, new, max_padding=1.0)
    assert torch.allclose(rows, batch, atol=1e-5)
    real = mask.bool()[:, None, :, None]
    for a, b in zip(rows_cache.layers, batch_cache.layers):
        assert a.keys.shape == b.keys.shape
        assert torch.allclose(a.keys * real, b.keys * real, atol=1e-5)


def test_generated_tokens_can_feed_a_training_step(tiny_model, tiny_processor):
    texts, images = zip(*prompts(tiny_processor))
    batch = tiny_processor(list(texts), list(images))
    out = tiny_model.generate(**batch, max_new_tokens=3, eos_token_id=[])
    emb = tiny_model.lang_model.get_input_embeddings()
    emb(out).sum().backward()  # not an inference tensor
    assert emb.weight.grad is not None


def test_flattened_prefill_equals_row_by_row_prefill(tiny_model, tiny_processor):
    from xgenmm.model.generation import _prefill, new_cache

    texts, images = zip(*prompts(tiny_processor))
    fused = tiny_model.fuse_inputs(**tiny_processor(list(texts), list(images)))
    decoder = tiny_model.lang_model.get_decoder()
    new = lambda: new_cache(tiny_model.lang_model.config, fused.attention_mask.shape[1])  # noqa: E731
    config = decoder.config
    with torch.no_grad():
        flat, flat_cache = _prefill(decoder, fused.inputs_embeds, fused.attention_mask, fused.position_ids, new)
        original = config._attn_implementation
        config._attn_implementation = "sdpa"  # an LM without segment-aware attention: row by row
        try:
            rows, rows_cache = _prefill(decoder, fused.inputs_embeds, fused.attention_mask, fused.position_ids, new)
        finally:
            config._attn_implementation = original
    assert torch.allclose(flat, rows, atol=1e-5)
    for a, b in zip(flat_cache.layers, rows_cache.layers):
        assert torch.allclose(a.keys, b.keys, atol=1e-5) and torch.allclose(a.values, b.values, atol=1e-5)


def test_preallocated_cache_layer_reads_like_a_growing_one():
    from transformers.cache_utils import DynamicLayer

    from xgenmm.model.generation import PreallocatedLayer

    torch.manual_seed(0)
    ours, ref = PreallocatedLayer(capacity=3), DynamicLayer()
    for n in (2, 1, 1, 4):  # outgrows its capacity twice
        k, v = torch.randn(2, 4, n, 8), torch.randn(2, 4, n, 8)
        a, b = ours.update(k, v), ref.update(k, v)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # Replaced from outside (beam-style reordering): the next write starts from the new tensors.
    ours.batch_select_indices(torch.tensor([1])), ref.batch_select_indices(torch.tensor([1]))
    k, v = torch.randn(1, 4, 1, 8), torch.randn(1, 4, 1, 8)
    a, b = ours.update(k, v), ref.update(k, v)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert ours.get_seq_length() == ref.get_seq_length() == 9


def test_generation_with_the_library_cache_gives_the_same_tokens(tiny_model, tiny_processor, monkeypatch):
    from transformers import DynamicCache

    import xgenmm.model.generation as generation

    texts, images = zip(*prompts(tiny_processor))
    batch = tiny_processor(list(texts), list(images))
    ours = tiny_model.generate(**batch, max_new_tokens=8, eos_token_id=[])
    monkeypatch.setattr(generation, "new_cache", lambda config, capacity: DynamicCache(config=config))
    library = tiny_model.generate(**batch, max_new_tokens=8, eos_token_id=[])
    assert torch.equal(ours, library)


def test_skinny_linears_compute_the_same_products_and_are_restored(tiny_model, tiny_processor, monkeypatch):
    import xgenmm.model.generation as generation

    linear = torch.nn.Linear(16, 40)
    x = torch.randn(2, 3, 16)
    with torch.no_grad(), generation.skinny_linears(linear):
        assert "forward" in linear.__dict__
        assert torch.allclose(linear(x), torch.nn.functional.linear(x, linear.weight, linear.bias), atol=1e-6)
    assert "forward" not in linear.__dict__
    with generation.skinny_linears(linear):  # autograd takes the usual path
        linear(x).sum().backward()
    assert linear.weight.grad is not None
    texts, images = zip(*prompts(tiny_processor))
    batch = tiny_processor(list(texts), list(images))
    ours = tiny_model.generate(**batch, max_new_tokens=8, eos_token_id=[])
    assert not any("forward" in m.__dict__ for m in tiny_model.modules())
    monkeypatch.setattr(generation, "SKINNY_ROWS", 0)  # every product through F.linear
    assert torch.equal(ours, tiny_model.generate(**batch, max_new_tokens=8, eos_token_id=[]))


def test_the_kv_cache_goes_by_the_name_the_lm_takes(tiny_model, tiny_processor, monkeypatch):
    """transformers renamed the LM's `past_key_values` argument to `cache` (the old name warns
    and goes in 5.40): generation passes the cache by the name the installed LM's forward takes,
    on every path (one row, a padded batch prefilled flattened or row by row, decoding steps)."""
    import warnings

    from xgenmm.model import generation
    from xgenmm.model.generation import _cache

    class OldStyle(torch.nn.Module):
        def forward(self, inputs_embeds=None, past_key_values=None, use_cache=None):
            return inputs_embeds

    assert list(_cache(OldStyle(), None)) == ["past_key_values"]
    ps = prompts(tiny_processor)
    texts, images = zip(*ps)
    batch = tiny_processor(list(texts), list(images))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flat = tiny_model.generate(**batch, max_new_tokens=4, eos_token_id=[])
        tiny_model.generate(**tiny_processor([texts[1]], [images[1]]), max_new_tokens=4, eos_token_id=[])
        monkeypatch.setattr(generation, "flatten_segments", lambda *a, **k: None)  # the row-by-row prefill
        by_row = tiny_model.generate(**batch, max_new_tokens=4, eos_token_id=[])
    assert [str(w.message) for w in caught if "past_key_values" in str(w.message)] == []
    assert torch.equal(flat, by_row)


def _text_batch(processor, texts):
    enc = processor.tokenizer(texts, padding=True, return_tensors="pt", padding_side="left")
    return enc["input_ids"], enc["attention_mask"]


@pytest.mark.parametrize("num_beams,length_penalty,early_stopping,max_new",
                         [(3, 0.0, False, 7), (3, 1.0, False, 7), (3, -2.0, False, 7), (3, 1.0, True, 7),
                          (2, 2.0, "never", 7), (5, 0.0, False, 1)])
def test_beam_search_gives_the_library_s_beam_search(tiny_model, tiny_processor, num_beams, length_penalty,
                                                     early_stopping, max_new):
    """Beam search on text prompts of three lengths gives, token for token, what Hugging Face's
    `generate(num_beams=K)` gives with the same LM (its length penalty and early stopping),
    with end tokens that some beams reach and others do not."""
    ids, mask = _text_batch(tiny_processor, ["how many shapes are there?", "what colour", "is there a green triangle in it?"])
    free = tiny_model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=7, eos_token_id=[])
    ends = sorted({int(free[0, 2]), int(free[2, 4])})  # tokens the greedy rows reach: some hypotheses end early
    pad = tiny_model.config.tokens.pad_token_id
    kw = dict(max_new_tokens=max_new, num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping)
    ours = tiny_model.generate(input_ids=ids, attention_mask=mask, eos_token_id=ends, **kw)
    lib = tiny_model.lang_model.generate(input_ids=ids, attention_mask=mask, do_sample=False, eos_token_id=ends,
                                         pad_token_id=pad, **kw)[:, ids.shape[1]:]
    assert torch.equal(ours, lib), (ours, lib)
    if max_new > 2:
        assert any(t in ends for t in ours.flatten().tolist())


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_beam_search_with_images_gives_the_library_s_on_the_same_embeddings(tiny_model, tiny_processor, padding_side):
    """With images spliced in: our beam search gives what the library's gives when handed the
    same fused, left-aligned prompt embeddings, with end tokens reached and without any."""
    from xgenmm.model.generation import _left_align

    texts, images = zip(*prompts(tiny_processor))
    batch = tiny_processor(list(texts), list(images), padding_side=padding_side)
    with torch.no_grad():
        embeds, mask = _left_align(tiny_model.fuse_inputs(**batch))
    greedy = tiny_model.generate(**batch, max_new_tokens=8, eos_token_id=[])
    pad = tiny_model.config.tokens.pad_token_id
    for ends in ([], sorted({int(greedy[0, 2]), int(greedy[2, 1])})):
        kw = dict(max_new_tokens=8, eos_token_id=ends, num_beams=4, length_penalty=0.0)
        ours = tiny_model.generate(**batch, **kw)
        with torch.no_grad():
            lib = tiny_model.lang_model.generate(inputs_embeds=embeds, attention_mask=mask, do_sample=False,
                                                 pad_token_id=pad, **kw)
        assert torch.equal(ours, lib), (ends, ours, lib)
    assert not torch.equal(ours, greedy[:, :ours.shape[1]])  # beams found other answers than greedy decoding
    assert torch.equal(tiny_model.generate(**batch, max_new_tokens=8, eos_token_id=[], num_beams=1), greedy)


def test_beam_search_refuses_what_it_does_not_do(tiny_model, tiny_processor):
    ids, mask = _text_batch(tiny_processor, ["what colour"])
    for kw in ({"num_beams": 0}, {"num_beams": 2, "do_sample": True}, {"num_beams": 2, "output_logits": True},
               {"num_beams": 2, "max_new_tokens": -1}, {"num_beams": 2, "early_stopping": "soon"}):
        kw = {"max_new_tokens": 3, **kw}
        with pytest.raises(ValueError, match="num_beams|beam search|max_new_tokens|early_stopping"):
            tiny_model.generate(input_ids=ids, attention_mask=mask, **kw)
