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
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(m.tokenizer)
        config = preset_config(m.preset, tokenizer=tokenizer, **m.preset_overrides)
        if tokenizer is None:
            raise ValueError(f"model.tokenizer: a fresh {m.preset} model needs its tokenizer directory")
        torch.manual_seed(cfg.seed)
        model = XGenMM(config)
        processor = processor_for(model, tokenizer)
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
    loader_cfg = LoaderConfig(seed=d.seed, num_workers=d.num_workers, rank=rank, world_size=world_size)
    return build_loader(source, processor, d.encode, d.batch, d.policy, loader_cfg)
