"""Building models from config: presets, other vision towers and LLMs, the frozen tower."""

import pytest
import torch

from tests.conftest import make_image
from xgenmm.model import XGenMM, XGenMMConfig
from xgenmm.model.presets import preset_config


def test_frozen_vision_tower_gets_no_gradient(tiny_model, tiny_processor):
    tiny_model.train()
    batch = tiny_processor(["<image>\nhi"], [[make_image(64, 64)]], padding_side="right")
    labels = batch["input_ids"].clone()
    out = tiny_model(**batch, labels=labels)
    out.loss.backward()
    assert all(p.grad is None for p in tiny_model.vision_encoder.parameters())
    assert tiny_model.vision_tokenizer.latents.grad is not None
    assert not tiny_model.vision_encoder.tower.training  # a frozen tower stays in eval mode


def test_any_vision_tower_with_patch_tokens_works(tiny_config):
    # A CLIP vision tower has a [CLS] token in front of its patch grid: it is dropped.
    d = tiny_config.to_dict()
    d["vision"] = {"model_type": "clip_vision_model", "hf_config": dict(hidden_size=64, intermediate_size=128,
                   num_hidden_layers=1, num_attention_heads=2, image_size=64, patch_size=8)}
    model = XGenMM(XGenMMConfig.from_dict(d)).eval()
    tokens, counts = model.encode_images([torch.zeros(3, 3, 64, 64)], [(128, 64)])
    assert counts == [3 * 16] and tokens.shape == (48, 128)


def test_any_causal_lm_works(tiny_config):
    d = tiny_config.to_dict()
    d["text"] = dict(model_type="llama", hidden_size=128, intermediate_size=256, num_hidden_layers=1,
                     num_attention_heads=4, num_key_value_heads=2, vocab_size=tiny_config.tokens.vocab_size)
    model = XGenMM(XGenMMConfig.from_dict(d)).eval()
    ids = torch.tensor([[5, tiny_config.tokens.image_token_id, 6]])
    out = model(ids, torch.ones_like(ids), [torch.zeros(1, 3, 64, 64)], [(64, 64)])
    assert out.logits.shape == (1, 2 + 16, tiny_config.tokens.vocab_size)


def test_config_rejects_unknown_keys_and_mismatched_widths(tiny_config):
    d = tiny_config.to_dict()
    with pytest.raises(ValueError, match="unknown key"):
        XGenMMConfig.from_dict({**d, "resampler": {**d["resampler"], "latent": 3}})
    with pytest.raises(ValueError, match="resampler.out_dim"):
        XGenMMConfig.from_dict({**d, "resampler": {**d["resampler"], "out_dim": 7}})
    with pytest.raises(ValueError, match="unknown model preset"):
        preset_config("huge")


def test_config_round_trips_through_json(tiny_config, tmp_path):
    tiny_config.save(tmp_path / "c.json")
    assert XGenMMConfig.load(tmp_path / "c.json") == tiny_config


def test_flops_per_sample_grow_with_crops_and_text(tiny_model):
    a = tiny_model.flops_per_sample(100, 1)
    assert tiny_model.flops_per_sample(100, 5) > a and tiny_model.flops_per_sample(200, 1) > a
    assert tiny_model.flops_per_sample(100, 1, training=False) < a


def test_flops_counter_reads_the_model_once_and_is_built_again_after_lora(tiny_config):
    from xgenmm.train.config import LoraSection, TrainableSection
    from xgenmm.train.trainable import apply_trainable

    model = XGenMM(tiny_config)
    count = model.flops_counter()
    for t, c in [(0, 0), (17, 1), (100, 5)]:
        assert count(t, c) == model.flops_per_sample(t, c)
    assert count(0, 0) == 0.0
    # Training adds the backward (x2) of the resampler and the LM; the frozen tower runs forward only.
    assert count(0, 1) > model.flops_counter(training=False)(0, 1) > 0
    apply_trainable(model, TrainableSection(lang_model=False), LoraSection(enabled=True, r=4, target_modules=["qkv_proj"]))
    assert model.flops_counter()(100, 1) > count(100, 1)  # the adapters' matmuls


def test_an_image_shared_by_several_rows_is_encoded_once_with_the_same_result(tiny_model, tiny_processor):
    from tests.conftest import make_image

    demo, a, b = make_image(90, 60, 1), make_image(128, 128, 2), make_image(50, 80, 3)
    shared = tiny_processor(["<image>x<image>y", "<image>x<image>z"], [[demo, a], [demo, b]])
    assert shared["pixel_values"][0] is shared["pixel_values"][2]
    calls = []
    hook = tiny_model.vision_encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    with torch.no_grad():
        out = tiny_model(**shared)
    hook.remove()
    assert calls == [3 + 5 + 3]  # demo (3 crops) once, a (5), b (3)
    separate = {k: (list(v) if k == "pixel_values" else v) for k, v in shared.items()}
    separate["pixel_values"][2] = separate["pixel_values"][2].clone()
    with torch.no_grad():
        ref = tiny_model(**separate)
    assert torch.equal(out.logits, ref.logits)


def test_model_output_is_a_pytree_whose_leaves_hold_the_loss(tiny_model, tiny_processor):
    """FSDP2 (up to torch 2.11) finds the tensors to hook for backward by flattening a module's
    output as a pytree; an opaque output left the root's parameters sharded in backward."""
    batch = tiny_processor(["<image>\nwhat colour is the circle?"], [[make_image(40, 30)]])
    out = tiny_model(**batch, labels=batch["input_ids"], return_logits=False)
    leaves, spec = torch.utils._pytree.tree_flatten(out)
    assert any(leaf is out.loss for leaf in leaves)
    rebuilt = torch.utils._pytree.tree_unflatten(leaves, spec)
    assert rebuilt.loss is out.loss and rebuilt.num_supervised == out.num_supervised


def test_the_image_token_cache_computes_each_image_tensor_once(tiny_model):
    """Frozen vision parts: an image's tokens are kept per tensor object (contents never
    hashed), recomputed for a new tensor however alike, and dropped when the tensor dies."""
    import gc

    model = tiny_model.eval()
    model.requires_grad_(False)
    torch.manual_seed(0)
    a, b = torch.randn(3, 3, 64, 64), torch.randn(1, 3, 64, 64)
    sizes = [(128, 64), (64, 64)]
    with torch.no_grad():
        expected, counts = model.encode_images([a, b, a], sizes + [(128, 64)])
        calls = []
        hook = model.vision_encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
        model.cache_image_tokens(True)
        first, c1 = model.encode_images([a, b, a], sizes + [(128, 64)])
        again, c2 = model.encode_images([b, a], sizes[::-1])
        copy, _ = model.encode_images([a.clone()], sizes[:1])
        hook.remove()
    assert calls == [4, 3]  # a and b once (a's repeat deduplicated), then only the clone
    assert c1 == counts and c2 == counts[:2][::-1]
    assert torch.allclose(first, expected, atol=1e-5)
    assert torch.equal(again, torch.cat([first[counts[0]:counts[0] + counts[1]], first[:counts[0]]]))
    assert torch.allclose(copy, expected[:counts[0]], atol=1e-5)
    held = len(model._image_tokens)
    del a
    gc.collect()
    assert len(model._image_tokens) == held - 1
    model.cache_image_tokens(False)
    assert model._image_tokens is None


def test_the_image_token_cache_refuses_a_trainable_vision_part(tiny_model):
    tiny_model.requires_grad_(False)
    tiny_model.vision_tokenizer.latents.requires_grad_(True)
    with pytest.raises(ValueError, match="frozen vision encoder and resampler; vision_tokenizer.latents is trainable"):
        tiny_model.cache_image_tokens(True)


def test_a_misspelt_llm_config_override_is_refused(tiny_tokenizer):
    """transformers keeps an unknown config key as a stray attribute, so `num_hidden_layer: 1`
    would build the preset's four layers without a word."""
    with pytest.raises(ValueError, match=r"num_hidden_layer \(did you mean num_hidden_layers\?\)"):
        preset_config("tiny", tokenizer=tiny_tokenizer, text={"num_hidden_layer": 1})
    cfg = preset_config("tiny", tokenizer=tiny_tokenizer, text={"num_hidden_layers": 1, "attention_dropout": 0.1})
    assert cfg.text["num_hidden_layers"] == 1
