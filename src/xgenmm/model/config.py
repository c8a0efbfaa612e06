"""Typed configuration of an XGenMM model: the four parts plus image and token settings.

Saved as `config.json` beside the weights. Every field is commented; `from_dict` rejects
unknown keys so that a typo in a hand-written config is an error, not a silent default.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The released any-resolution grids, (width, height) in pixels of 384-pixel tiles:
# 1x2, 2x1, 2x2, 3x1, 1x3. There is no 1x1 grid.
RELEASE_GRIDS = [[384, 768], [768, 384], [768, 768], [1152, 384], [384, 1152]]


@dataclass
class VisionConfig:
    model_type: str = "siglip_vision_model"  # transformers config model_type of the vision tower
    hf_config: dict = field(default_factory=dict)  # that config's fields (hidden_size, image_size, patch_size, ...)
    frozen: bool = True  # frozen in every stage of the recipe; encoded under no_grad
    release_model_name: str | None = None  # the hub id the released config names it by (for export)


@dataclass
class ResamplerConfig:
    dim: int = 1152  # input width = the vision tower's hidden size
    out_dim: int = 3072  # output width = the LM's hidden size (the projection)
    num_latents: int = 128  # tokens per crop
    depth: int = 6  # fixed at 6 in the release, whatever the widths
    heads: int = 16  # fixed at 16 in the release
    dim_head: int = 96  # fixed at 96 in the release
    ff_mult: int = 4  # feed-forward width multiplier
    # Learned position embeddings added to a group's media tokens, one per token of the group
    # (0: none, as released). The released resampler reads its tokens as an unordered set and
    # relies on the vision tower to write each patch's position into its features, which a
    # large pretrained SigLIP does; a small tower trained from scratch may not, and then no
    # question about where something is can be answered (see ARCHITECTURE.md).
    media_positions: int = 0
    # Embeddings added to a token group's output tokens by the group's place in its image: 0
    # the base crop (or the whole image), k the k-th tile group (0: none, as released). The
    # released model leaves a tile's place to the LM's own position encoding; a tiny LM with
    # rotary positions (relative only) learns "which tile is this" slowly (ARCHITECTURE.md).
    # With one anyres grid, as the synthetic world's, a slot is a place in the image.
    group_positions: int = 0
    # Embeddings added to every token of a sample's 2nd, 3rd, ... image by its place among the
    # sample's images (k rows cover images 2 to k + 1; 0: none, as released). The first image
    # gets none, so single-image inputs are unchanged. Like tile places, which image a token
    # belongs to reaches a tiny rotary LM only slowly from its relative positions
    # (ARCHITECTURE.md); a sample with more images than the rows cover is an error.
    image_positions: int = 0


@dataclass
class ImageConfig:
    image_size: int = 384  # side of every crop fed to the vision tower
    mode: str = "anyres"  # squash (resize), pad (to square, then resize) or anyres (base crop + grid tiles)
    grids: list = field(default_factory=lambda: [list(g) for g in RELEASE_GRIDS])  # anyres candidates [w, h]
    token_grouping: str = "release"  # release: the released raster regrouping of the stitched map; tiles: one group per tile


@dataclass
class TokenConfig:
    initial_tokenizer_len: int = 32012  # tokenizer length before the three image tokens; their ids follow
    pad_token_id: int = 32011  # `<pad>`, added because Phi-3's pad equals its eos
    eos_token_ids: list = field(default_factory=lambda: [32007])  # generation stops on these (`<|end|>`)
    release_vocab_rows: int | None = None  # rows of the released LM embedding (32064) for export; None: no padding rows

    @property
    def image_token_id(self) -> int:
        return self.initial_tokenizer_len

    @property
    def placeholder_token_id(self) -> int:
        return self.initial_tokenizer_len + 1

    @property
    def endofchunk_token_id(self) -> int:
        return self.initial_tokenizer_len + 2

    @property
    def vocab_size(self) -> int:
        """Rows of the merged embedding and columns of the logits: the text ids + 3."""
        return self.initial_tokenizer_len + 3


@dataclass
class XGenMMConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    resampler: ResamplerConfig = field(default_factory=ResamplerConfig)
    text: dict = field(default_factory=dict)  # the LLM's transformers config (model_type "phi3" by default)
    image: ImageConfig = field(default_factory=ImageConfig)
    tokens: TokenConfig = field(default_factory=TokenConfig)
    lm_head_bias: bool = True  # the release's LM head has a (trained) bias
    model_type: str = "xgenmm"

    def __post_init__(self) -> None:
        for name, cls in (("vision", VisionConfig), ("resampler", ResamplerConfig), ("image", ImageConfig), ("tokens", TokenConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _from_dict(cls, value, name))
        self.validate()

    def validate(self) -> None:
        if self.image.mode not in ("squash", "pad", "anyres"):
            raise ValueError(f"config image.mode must be squash, pad or anyres, got {self.image.mode!r}")
        if self.image.token_grouping not in ("release", "tiles"):
            raise ValueError(f"config image.token_grouping must be release or tiles, got {self.image.token_grouping!r}")
        for g in self.image.grids:
            if len(g) != 2 or g[0] % self.image.image_size or g[1] % self.image.image_size:
                raise ValueError(f"config image.grids entry {g} is not a [w, h] multiple of image_size {self.image.image_size}")
        if "model_type" not in self.text:
            raise ValueError("config text must name the LLM's model_type (e.g. 'phi3')")
        hidden = self.text.get("hidden_size")
        if hidden is not None and hidden != self.resampler.out_dim:
            raise ValueError(f"config resampler.out_dim {self.resampler.out_dim} != text.hidden_size {hidden}")
        vis_hidden = self.vision.hf_config.get("hidden_size")
        if vis_hidden is not None and vis_hidden != self.resampler.dim:
            raise ValueError(f"config resampler.dim {self.resampler.dim} != vision hidden_size {vis_hidden}")
        if self.text.get("vocab_size") not in (None, self.tokens.vocab_size):
            raise ValueError(
                f"config text.vocab_size {self.text['vocab_size']} != tokens.initial_tokenizer_len + 3 = {self.tokens.vocab_size}"
            )

    @property
    def vision_tokens_per_crop_side(self) -> int:
        return self.image.image_size // self.vision.hf_config.get("patch_size", 14)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "XGenMMConfig":
        return _from_dict(cls, d, "config")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "XGenMMConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def _from_dict(cls: Any, d: dict, where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(names)}")
    return cls(**d)
