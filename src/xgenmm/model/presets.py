"""Named model sizes. `phi3-mini` is the released xGen-MM v1.5 (4.36B parameters); `small` is
the configuration of the speed baseline; `tiny` is for tests and the synthetic-world demo."""

from __future__ import annotations

import copy
import difflib

from .config import RELEASE_GRIDS, ImageConfig, ResamplerConfig, TokenConfig, VisionConfig, XGenMMConfig

SIGLIP_SO400M_ID = "google/siglip-so400m-patch14-384"
SIGLIP_SO400M_384 = dict(  # google/siglip-so400m-patch14-384, vision tower
    hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
    image_size=384, patch_size=14, num_channels=3, layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh",
)

PHI3_MINI_4K = dict(  # microsoft/Phi-3-mini-4k-instruct
    model_type="phi3", hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
    original_max_position_embeddings=4096, rope_theta=10000.0, rms_norm_eps=1e-5,
    sliding_window=2047, hidden_act="silu", bos_token_id=1, eos_token_id=32000,
    pad_token_id=32011, tie_word_embeddings=False, attention_dropout=0.0,
)


def _phi3_mini() -> XGenMMConfig:
    tokens = TokenConfig(initial_tokenizer_len=32012, pad_token_id=32011, eos_token_ids=[32007], release_vocab_rows=32064)
    return XGenMMConfig(
        vision=VisionConfig(hf_config=dict(SIGLIP_SO400M_384), release_model_name=SIGLIP_SO400M_ID),
        resampler=ResamplerConfig(dim=1152, out_dim=3072, num_latents=128),
        text=dict(PHI3_MINI_4K, vocab_size=tokens.vocab_size),
        image=ImageConfig(image_size=384, mode="anyres", grids=[list(g) for g in RELEASE_GRIDS]),
        tokens=tokens,
    )


def _small() -> XGenMMConfig:
    # The speed-baseline configuration: 1000 text ids (+3 image tokens), 1024 released rows.
    tokens = TokenConfig(initial_tokenizer_len=1000, pad_token_id=999, eos_token_ids=[2], release_vocab_rows=1021)
    return XGenMMConfig(
        vision=VisionConfig(hf_config=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                                           num_attention_heads=4, image_size=56, patch_size=14)),
        resampler=ResamplerConfig(dim=128, out_dim=256, num_latents=32),
        text=dict(model_type="phi3", hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096,
                  rope_theta=10000.0, rms_norm_eps=1e-5, sliding_window=2047, bos_token_id=1,
                  eos_token_id=2, pad_token_id=999, tie_word_embeddings=False, vocab_size=tokens.vocab_size),
        image=ImageConfig(image_size=56, mode="anyres", grids=[[56, 112], [112, 56], [112, 112], [168, 56], [56, 168]]),
        tokens=tokens,
    )


def _tiny() -> XGenMMConfig:
    # Sized to learn the synthetic world on two CPU cores: 64-pixel crops, patch 8 (8x8 = 64
    # tokens per crop), 16 latents per crop, a 4-layer 128-wide Phi-3.
    tokens = TokenConfig(initial_tokenizer_len=509, pad_token_id=508, eos_token_ids=[7])
    return XGenMMConfig(
        vision=VisionConfig(hf_config=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                                           num_attention_heads=2, image_size=64, patch_size=8)),
        resampler=ResamplerConfig(dim=64, out_dim=128, num_latents=16, depth=2, heads=4, dim_head=32, ff_mult=2),
        text=dict(model_type="phi3", hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
                  rope_theta=10000.0, rms_norm_eps=1e-5, sliding_window=None, bos_token_id=1,
                  eos_token_id=2, pad_token_id=508, tie_word_embeddings=False, vocab_size=tokens.vocab_size),
        image=ImageConfig(image_size=64, mode="anyres", grids=[[64, 128], [128, 64], [128, 128], [192, 64], [64, 192]],
                          token_grouping="tiles"),
        tokens=tokens,
    )


PRESETS = {"phi3-mini": _phi3_mini, "small": _small, "tiny": _tiny}


def preset_config(name: str, *, tokenizer=None, **overrides) -> XGenMMConfig:
    """The named preset, optionally sized to a tokenizer (its image tokens' first id becomes
    `initial_tokenizer_len`, its pad and `<|end|>` ids are taken) and with top-level section
    overrides, e.g. `preset_config("tiny", image={"mode": "squash"})`."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    d = PRESETS[name]().to_dict()
    if tokenizer is not None:
        from .template import END_TAG, IMAGE_TOKEN

        initial = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if initial != len(tokenizer) - 3:
            raise ValueError(f"tokenizer: {IMAGE_TOKEN} has id {initial}; expected the image tokens at the last three ids")
        d["tokens"].update(initial_tokenizer_len=initial, pad_token_id=tokenizer.pad_token_id,
                           eos_token_ids=[tokenizer.convert_tokens_to_ids(END_TAG)], release_vocab_rows=None)
        d["text"].update(vocab_size=initial + 3, pad_token_id=tokenizer.pad_token_id)
    for section, values in overrides.items():
        if section not in d:
            raise ValueError(f"unknown config section {section!r}")
        if section == "text" and isinstance(values, dict):
            _check_text_keys(d["text"], values)
        if isinstance(d[section], dict) and isinstance(values, dict):
            d[section] = {**copy.deepcopy(d[section]), **values}
        else:
            d[section] = values
    return XGenMMConfig.from_dict(d)


def _check_text_keys(preset: dict, values: dict) -> None:
    """Refuse an override of the LLM's config that misspells a field of its transformers config
    (`num_hidden_layer` for `num_hidden_layers`): the library would keep it as a stray attribute
    and build the preset's model, silently. A key like no field (a legacy or custom one, which
    the library may still read) is left to it."""
    new = [k for k in values if k not in preset]
    if not new:
        return
    from transformers import AutoConfig

    model_type = values.get("model_type", preset.get("model_type"))
    try:
        reference = AutoConfig.for_model(model_type)
    except ValueError as e:
        raise ValueError(f"text.model_type {model_type!r}: {e}") from e
    known = set(reference.to_dict()) | set(getattr(reference, "attribute_map", {})) | set(vars(reference))
    hints = {k: difflib.get_close_matches(k, sorted(known), n=1, cutoff=0.85) for k in new if k not in known}
    typos = {k: h[0] for k, h in hints.items() if h}
    if typos:
        said = "; ".join(f"{k} (did you mean {h}?)" for k, h in typos.items())
        raise ValueError(f"text: not fields of the {model_type} config: {said}")
