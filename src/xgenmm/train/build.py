"""Factories: a TrainConfig's model section to (model, processor), and its data section to the
resumable loader of this rank."""

from __future__ import annotations

import logging

import torch

from ..data.loader import LoaderConfig, ResumableLoader, build_loader
from ..data.sources import SourceConfig
from ..model import XGenMM, XGenMMProcessor
from ..model.image_processing import XGenMMImageProcessor
from .config import TrainConfig

log = logging.getLogger("xgenmm.train")


def processor_for(model: XGenMM, tokenizer) -> XGenMMProcessor:
    img = model.config.image
    return XGenMMProcessor(XGenMMImageProcessor(img.image_size, img.mode, img.grids), tokenizer,
                           model.config.resampler.num_latents)


def build_model(cfg: TrainConfig) -> tuple[XGenMM, XGenMMProcessor]:
    """A fresh model from a preset (seeded with cfg.seed), or the model directory of
    `model.checkpoint`; with its processor. fp32 parameters on CPU (moved later)."""
    m = cfg.model
    if m.checkpoint:
        model = XGenMM.from_pretrained(m.checkpoint)
        processor = XGenMMProcessor.from_pretrained(m.checkpoint)
    else:
        from ..model.presets import preset_config

        tokenizer = None
        if m.tokenizer:
            from ..model.processor import load_tokenizer

            tokenizer = load_tokenizer(m.tokenizer)
        config = preset_config(m.preset, tokenizer=tokenizer, **m.preset_overrides)
        if tokenizer is None:
            raise ValueError(f"model.tokenizer: a fresh {m.preset} model needs its tokenizer directory")
        torch.manual_seed(cfg.seed)
        model = XGenMM(config)
        processor = processor_for(model, tokenizer)
        if m.vision_init:
            load_pretrained_vision(model, m.vision_init)
        if m.lm_init:
            load_pretrained_lm(model, m.lm_init)
    if m.image_mode is not None and m.image_mode != model.config.image.mode:
        # Pretraining reads fixed-resolution crops, SFT any-resolution ones: the same weights,
        # a different image processor (saved with the stage's output).
        log.info("image mode: %s -> %s", model.config.image.mode, m.image_mode)
        model.config.image.mode = m.image_mode
        processor = processor_for(model, processor.tokenizer)
    _check_vocab(model, processor)
    return model.float().train(), processor


def _check_vocab(model: XGenMM, processor: XGenMMProcessor) -> None:
    tok = model.config.tokens
    if processor.image_token_id != tok.image_token_id or processor.pad_token_id != tok.pad_token_id:
        raise ValueError(
            f"tokenizer and model disagree: <image> id {processor.image_token_id} vs {tok.image_token_id}, "
            f"pad id {processor.pad_token_id} vs {tok.pad_token_id}"
        )


def build_data(cfg: TrainConfig, processor: XGenMMProcessor, rank: int = 0, world_size: int = 1) -> ResumableLoader:
    d = cfg.data
    source = SourceConfig(path=list(d.source)) if isinstance(d.source, list) else d.source
    loader_cfg = LoaderConfig(seed=d.seed, num_workers=d.num_workers, rank=rank, world_size=world_size, cache_mb=d.cache_mb)
    return build_loader(source, processor, d.encode, d.batch, d.policy, loader_cfg)


def load_pretrained_vision(model: XGenMM, name_or_path: str) -> None:
    """The vision tower's weights from a SigLIP checkpoint (the full dual encoder or its
    vision model); the shapes must match the preset's vision config."""
    from transformers import AutoModel

    source = AutoModel.from_pretrained(name_or_path)
    tower = getattr(source, "vision_model", source)
    state = {k.removeprefix("vision_model."): v for k, v in tower.state_dict().items()}
    target = model.vision_encoder.tower
    own = target.state_dict()
    state = {k.removeprefix("vision_model."): v for k, v in state.items() if k.removeprefix("vision_model.") in own}
    from ..model.checkpoint import check_state_dict

    check_state_dict(own, state, f"model.vision_init {name_or_path}")
    target.load_state_dict(state, strict=True)
    log.info("vision tower initialised from %s", name_or_path)


def load_pretrained_lm(model: XGenMM, name_or_path: str) -> None:
    """The LLM's weights from a causal-LM checkpoint (Phi-3 for the release). Its embedding
    and head rows cover the text ids; the three image tokens' rows stay at their N(0, 0.02)
    initialisation and the head bias at zero (the release's recipe, reference section 3)."""
    from transformers import AutoModelForCausalLM

    from ..model.checkpoint import check_state_dict

    source = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch.float32).state_dict()
    target = model.lang_model
    own = target.state_dict()
    n_text = model.config.tokens.initial_tokenizer_len
    state = {}
    for key, value in source.items():
        if key not in own:
            continue
        if own[key].shape != value.shape and value.dim() >= 1 and value.shape[1:] == own[key].shape[1:] \
                and value.shape[0] >= n_text and own[key].shape[0] == n_text + 3:
            rows = own[key].clone()
            rows[:n_text] = value[:n_text]
            value = rows
        state[key] = value
    for key in own:  # the release's head bias has no pretrained counterpart
        if key not in state and key.endswith("lm_head.bias"):
            state[key] = torch.zeros_like(own[key])
    check_state_dict(own, state, f"model.lm_init {name_or_path}")
    with torch.no_grad():
        for k in ("model.embed_tokens.weight", "lm_head.weight"):
            if k in state:
                state[k][n_text:].normal_(0.0, 0.02)
    target.load_state_dict(state, strict=True)
    log.info("LLM initialised from %s (rows %d.. of the image tokens newly initialised)", name_or_path, n_text)
