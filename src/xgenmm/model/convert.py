"""Import and export of the released xGen-MM v1.5 checkpoint layout (reference section 6).

The release keeps Phi-3's embedding [R, D] plus a "decoupled" extra table [3, D] for the
image tokens, and an LM head [R, D] with a bias [R] whose logits are cut to the first
`initial_tokenizer_len` columns and extended by an extra Linear(D -> 3). Here both are
merged: rows = original[:initial_len] ++ extra[3]. Rows initial_len..R-1 are never used by
the release (its logits are sliced before them); export writes them as zeros.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch

from .checkpoint import CONFIG, atomic_directory, check_state_dict, read_safetensors, write_safetensors
from .config import ImageConfig, ResamplerConfig, TokenConfig, VisionConfig, XGenMMConfig
from .presets import SIGLIP_SO400M_384, SIGLIP_SO400M_ID

log = logging.getLogger(__name__)

P = "vlm."
EMB = "lang_model.model.embed_tokens.weight"
EXTRA_EMB = "lang_model.model.embed_tokens.additional_embedding.weight"
HEAD_W, HEAD_B = "lang_model.lm_head.weight", "lang_model.lm_head.bias"
EXTRA_W, EXTRA_B = "lang_model.lm_head.additional_fc.weight", "lang_model.lm_head.additional_fc.bias"
_DROP_TEXT_KEYS = {"initial_tokenizer_len", "_name_or_path", "architectures", "auto_map", "torch_dtype", "dtype",
                   "transformers_version", "_attn_implementation_autoset"}
KNOWN_VISION = {SIGLIP_SO400M_ID: SIGLIP_SO400M_384}
_VISION_CONFIG_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size",
                         "patch_size", "num_channels", "layer_norm_eps", "hidden_act", "attention_dropout")


def _vision_hf_config(release_dir: Path, model_name: str, override: str | None) -> dict:
    """The vision tower's config: the weights are in the checkpoint, only the shape is needed."""
    candidates = [Path(override)] if override else []
    candidates += [release_dir / model_name, Path(model_name)]
    for c in candidates:
        f = c / "config.json" if c.is_dir() else c
        if f.is_file():
            d = json.loads(f.read_text())
            d = d.get("vision_config", d)
            return {k: d[k] for k in _VISION_CONFIG_FIELDS if k in d}
    if model_name in KNOWN_VISION:
        return dict(KNOWN_VISION[model_name])
    try:  # a cached copy of the hub model
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(model_name, local_files_only=True)
        d = getattr(cfg, "vision_config", cfg).to_dict()
        return {k: d[k] for k in _VISION_CONFIG_FIELDS if k in d}
    except Exception as e:  # noqa: BLE001 - any failure means: not available offline
        raise FileNotFoundError(
            f"vision encoder {model_name!r}: no config found (looked in {release_dir / model_name}); "
            f"pass --vision-config PATH to its config.json"
        ) from e


def release_config_to_ours(release_dir: Path, vision_config: str | None = None) -> XGenMMConfig:
    raw = json.loads((release_dir / CONFIG).read_text())
    if raw.get("model_type") != "xgenmm" or "vision_encoder_config" not in raw:
        raise ValueError(f"{release_dir / CONFIG}: not a released xGen-MM config (model_type {raw.get('model_type')!r})")
    venc, vtok, text = raw["vision_encoder_config"], raw["vision_tokenizer_config"], dict(raw["text_config"])
    initial = int(text.get("initial_tokenizer_len", 32012))
    release_rows = int(text.get("vocab_size", 32064))
    pp = release_dir / "preprocessor_config.json"
    pre = json.loads(pp.read_text()) if pp.exists() else {}
    size = pre.get("size", 384)
    size = int(size[0] if isinstance(size, (list, tuple)) else size)
    anyres = venc.get("image_aspect_ratio") == "anyres" and bool(pre.get("grids") or venc.get("anyres_grids"))
    grids = pre.get("grids") or venc.get("anyres_grids") or [[384, 768], [768, 384], [768, 768], [1152, 384], [384, 1152]]
    gen_eos = _generation_eos(release_dir)
    # Several end tokens (a list in generation_config.json, as export_release writes them) are
    # kept; otherwise the tokenizer's <|end|>, as the release's chat ends its turns with it.
    eos = gen_eos if isinstance(gen_eos, list) and len(gen_eos) > 1 else (
        _end_token_id(release_dir) or gen_eos or text.get("eos_token_id", 32000))
    text = {k: v for k, v in text.items() if k not in _DROP_TEXT_KEYS}
    text.setdefault("model_type", "phi3")
    text["vocab_size"] = initial + 3
    model_name = venc.get("model_name", SIGLIP_SO400M_ID)
    return XGenMMConfig(
        vision=VisionConfig(hf_config=_vision_hf_config(release_dir, model_name, vision_config), release_model_name=model_name),
        resampler=ResamplerConfig(dim=vtok["vis_feature_dim"], out_dim=vtok["lang_embedding_dim"],
                                  num_latents=vtok.get("num_vis_tokens", 128)),
        text=text,
        image=ImageConfig(image_size=size, mode="anyres" if anyres else "squash", grids=grids, token_grouping="release"),
        tokens=TokenConfig(initial_tokenizer_len=initial, pad_token_id=int(text.get("pad_token_id", initial - 1)),
                           eos_token_ids=[int(eos)] if not isinstance(eos, list) else eos, release_vocab_rows=release_rows),
    )


def _end_token_id(release_dir: Path) -> int | None:
    if not any((release_dir / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
        return None
    from .processor import load_tokenizer

    tid = load_tokenizer(release_dir).convert_tokens_to_ids("<|end|>")
    return tid if isinstance(tid, int) and tid >= 0 else None


def _generation_eos(release_dir: Path):
    f = release_dir / "generation_config.json"
    return json.loads(f.read_text()).get("eos_token_id") if f.exists() else None


def release_state_to_ours(release: dict[str, torch.Tensor], initial: int) -> dict[str, torch.Tensor]:
    bad = [k for k in release if not k.startswith(P)]
    if bad:
        raise ValueError(f"release checkpoint: keys without the {P!r} prefix: {bad[:5]}")
    src = {k[len(P):]: v for k, v in release.items()}
    for k in (EMB, EXTRA_EMB, HEAD_W, HEAD_B, EXTRA_W, EXTRA_B):
        if k not in src:
            raise ValueError(f"release checkpoint: missing key {P + k}")
    out = {}
    for k, v in src.items():
        if k in (EMB, EXTRA_EMB, HEAD_W, HEAD_B, EXTRA_W, EXTRA_B):
            continue
        if k.startswith("vision_encoder."):
            rest = k[len("vision_encoder."):]
            rest = rest[len("vision_model."):] if rest.startswith("vision_model.") else rest
            out["vision_encoder.tower." + rest] = v
        else:
            out[k] = v
    out[EMB] = torch.cat((src[EMB][:initial], src[EXTRA_EMB]))
    out[HEAD_W] = torch.cat((src[HEAD_W][:initial], src[EXTRA_W]))
    out[HEAD_B] = torch.cat((src[HEAD_B][:initial], src[EXTRA_B]))
    return out


def our_state_to_release(state: dict[str, torch.Tensor], initial: int, rows: int) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        if k in (EMB, HEAD_W, HEAD_B):
            continue
        if k.startswith("vision_encoder.tower."):
            out[P + "vision_encoder." + k[len("vision_encoder.tower."):]] = v
        else:
            out[P + k] = v

    def padded(t: torch.Tensor) -> torch.Tensor:
        pad = t.new_zeros((rows - initial,) + tuple(t.shape[1:]))
        return torch.cat((t[:initial], pad))

    out[P + EMB], out[P + EXTRA_EMB] = padded(state[EMB]), state[EMB][initial:].clone()
    out[P + HEAD_W], out[P + EXTRA_W] = padded(state[HEAD_W]), state[HEAD_W][initial:].clone()
    out[P + HEAD_B], out[P + EXTRA_B] = padded(state[HEAD_B]), state[HEAD_B][initial:].clone()
    return out


def _copy_tokenizer_files(src: Path, dst: Path) -> bool:
    names = ["tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
             "added_tokens.json", "chat_template.jinja"]
    found = False
    for n in names:
        if (src / n).exists():
            shutil.copy2(src / n, dst / n)
            found = True
    return found


def import_release(release_dir: str | Path, out_dir: str | Path, vision_config: str | None = None) -> XGenMMConfig:
    """Released xGen-MM directory -> a `from_pretrained` directory of this project."""
    from .image_processing import XGenMMImageProcessor
    from .xgenmm import XGenMM

    release_dir = Path(release_dir)
    config = release_config_to_ours(release_dir, vision_config)
    state = release_state_to_ours(read_safetensors(release_dir), config.tokens.initial_tokenizer_len)
    with torch.device("meta"):
        expected = XGenMM(config).state_dict()
    check_state_dict(expected, state, f"release checkpoint {release_dir}")
    with atomic_directory(out_dir) as tmp:
        config.save(tmp / CONFIG)
        write_safetensors(state, tmp)
        XGenMMImageProcessor(config.image.image_size, config.image.mode, config.image.grids).save_pretrained(tmp)
        if _copy_tokenizer_files(release_dir, tmp):
            (tmp / "processor_config.json").write_text(json.dumps(
                {"processor_class": "XGenMMProcessor", "image_tokens_per_crop": config.resampler.num_latents}, indent=2) + "\n")
        else:
            log.warning("%s has no tokenizer files: the imported model has no processor tokenizer", release_dir)
    return config


def export_release(model_dir: str | Path, out_dir: str | Path) -> None:
    """A model directory of this project -> the released layout (keys `vlm.*`, decoupled
    embedding and LM head, release config, Blip3ImageProcessor settings)."""
    model_dir = Path(model_dir)
    config = XGenMMConfig.load(model_dir / CONFIG)
    r = config.resampler
    if (r.depth, r.heads, r.dim_head, r.ff_mult) != (6, 16, 96, 4):
        raise ValueError(f"{model_dir}: resampler depth/heads/dim_head/ff_mult {r.depth}/{r.heads}/{r.dim_head}/{r.ff_mult} "
                         "differ from the release's fixed 6/16/96/4; the released code cannot load it")
    if r.group_positions:
        raise ValueError(f"{model_dir}: the resampler has group position embeddings (resampler.group_positions="
                         f"{r.group_positions}); the released resampler has none, so its code cannot load it")
    if r.image_positions:
        raise ValueError(f"{model_dir}: the resampler has image position embeddings (resampler.image_positions="
                         f"{r.image_positions}); the released model has none, so its code cannot load it")
    if r.media_positions:
        raise ValueError(f"{model_dir}: the resampler has media position embeddings (resampler.media_positions="
                         f"{r.media_positions}); the released resampler has none, so its code cannot load it")
    if not config.lm_head_bias:
        raise ValueError(f"{model_dir}: the released LM head has a bias; this model has none")
    if config.image.mode == "anyres" and config.image.token_grouping != "release":
        raise ValueError(f"{model_dir}: the model orders an image's tokens by tile (image.token_grouping="
                         f"{config.image.token_grouping!r}); the released code orders them its own way (release), so "
                         "it would compute something else")
    if config.image.mode not in ("anyres", "squash"):
        raise ValueError(f"{model_dir}: image.mode {config.image.mode!r}; the released image processor resizes by "
                         "squash or any-resolution only, so it would preprocess differently")
    tok = config.tokens
    initial = tok.initial_tokenizer_len
    rows = tok.release_vocab_rows or initial
    state = our_state_to_release(read_safetensors(model_dir), initial, rows)
    text = {k: v for k, v in config.text.items()}
    text.update(vocab_size=rows, initial_tokenizer_len=initial, pad_token_id=tok.pad_token_id)
    release_config = {
        "architectures": ["XGenMMModelForConditionalGeneration"],
        "model_type": "xgenmm",
        "vision_encoder_config": {
            "model_name": config.vision.release_model_name or SIGLIP_SO400M_ID,
            "anyres_grids": config.image.grids, "image_aspect_ratio": "anyres" if config.image.mode == "anyres" else "none",
            "anyres_patch_sampling": True, "model_type": "xgenmm_vision_encoder",
        },
        "vision_tokenizer_config": {
            "vis_feature_dim": r.dim, "lang_embedding_dim": r.out_dim, "num_vis_tokens": r.num_latents,
            "image_aspect_ratio": "anyres" if config.image.mode == "anyres" else "none",
            "model_type": "xgenmm_vision_tokenizer",
        },
        "text_config": text,
        "torch_dtype": "float32",
    }
    s = config.image.image_size
    pre = {"image_processor_type": "Blip3ImageProcessor", "do_resize": True, "size": [s, s], "resize_mode": "squash",
           "interpolation_mode": "bicubic", "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    if config.image.mode == "anyres":
        pre["grids"] = config.image.grids
    with atomic_directory(out_dir) as tmp:
        (tmp / CONFIG).write_text(json.dumps(release_config, indent=2) + "\n")
        (tmp / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n")
        (tmp / "generation_config.json").write_text(json.dumps(
            {"eos_token_id": tok.eos_token_ids[0] if len(tok.eos_token_ids) == 1 else list(tok.eos_token_ids),
             "pad_token_id": tok.pad_token_id}, indent=2) + "\n")
        write_safetensors(state, tmp, metadata={"format": "pt"})
        _copy_tokenizer_files(model_dir, tmp)
