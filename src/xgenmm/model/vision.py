"""The vision encoder: a transformers vision tower (SigLIP by default, any tower whose output
is a grid of patch tokens otherwise), frozen and run under no_grad by default."""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel

from .config import VisionConfig


def build_vision_tower(cfg: VisionConfig) -> nn.Module:
    hf_config = AutoConfig.for_model(cfg.model_type, **cfg.hf_config)
    return AutoModel.from_config(hf_config, attn_implementation="sdpa")


class VisionEncoder(nn.Module):
    def __init__(self, cfg: VisionConfig, tower: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        self.tower = tower if tower is not None else build_vision_tower(cfg)
        if cfg.frozen:
            self.tower.requires_grad_(False)
        # SigLIP-like towers: call embeddings -> encoder -> post_layernorm directly, so that the
        # attention-pooling head (in the checkpoint, unused by the model) is not computed.
        self._direct = all(hasattr(self.tower, a) for a in ("embeddings", "encoder", "post_layernorm"))

    @property
    def hidden_size(self) -> int:
        return self.tower.config.hidden_size

    def tokens_per_crop(self, image_size: int) -> int:
        return (image_size // self.tower.config.patch_size) ** 2

    def train(self, mode: bool = True):
        super().train(mode)
        if self.cfg.frozen:
            self.tower.eval()  # a frozen tower stays in eval mode (no dropout)
        return self

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, 3, S, S] crops -> [N, P, C] patch tokens (last hidden state, after the final norm)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.cfg.frozen):
            pixel_values = pixel_values.to(self.tower.dtype)
            if self._direct:
                h = self.tower.embeddings(pixel_values)
                h = self.tower.encoder(inputs_embeds=h).last_hidden_state
                tokens = self.tower.post_layernorm(h)
            else:
                tokens = self.tower(pixel_values=pixel_values).last_hidden_state
        side = pixel_values.shape[-1] // self.tower.config.patch_size
        if tokens.shape[1] == side * side + 1:  # towers with a [CLS] token: keep the patch grid
            tokens = tokens[:, 1:]
        return tokens
