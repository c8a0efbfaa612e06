"""The Perceiver resampler (reference section 2): a fixed set of learned latents reads one
crop's vision tokens through `depth` layers of cross-attention + feed-forward, and the
result is projected into the LM's width. The module and parameter names are the release's,
so its checkpoints load key for key."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import shape_free_kernels
from .config import ResamplerConfig


class PerceiverAttention(nn.Module):
    def __init__(self, dim: int, dim_head: int, heads: int):
        super().__init__()
        self.heads, self.dim_head, self.scale = heads, dim_head, dim_head**-0.5
        inner = dim_head * heads
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor, key_bias: torch.Tensor | None,
                shared: bool = False) -> torch.Tensor:
        """x: [N, P, D] media tokens; latents: [N, T, D]; key_bias: [N, 1, 1, P + T] (0 or -inf).
        `shared`: every group's latents are the same array (the first layer's learned latents),
        so their queries, keys and values are computed once and shared."""
        x = self.norm_media(x)
        n, t, _ = latents.shape
        if shared:
            one = self.norm_latents(latents[:1])
            q = self.to_q(one).expand(n, -1, -1)
            (k_x, v_x), (k_l, v_l) = self._keys_values(x), self._keys_values(one)
            k = torch.cat((k_x, k_l.expand(n, -1, -1)), dim=1)
            v = torch.cat((v_x, v_l.expand(n, -1, -1)), dim=1)
        else:
            latents = self.norm_latents(latents)
            q = self.to_q(latents)
            # Keys and values read the media tokens and the latents themselves.
            k, v = self._keys_values(torch.cat((x, latents), dim=1))
        return self._attend(q, k, v, key_bias)

    def _keys_values(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`to_kv` (the release's single weight) as two products, one per half: the same
        numbers as one call cut in two, without materialising the concatenated output and, in
        backward, concatenating its gradient. A wrapped `to_kv` (an adapter, a hook) is called
        as a module."""
        if type(self.to_kv) is not nn.Linear:
            return self.to_kv(z).chunk(2, dim=-1)
        w_k, w_v = self.to_kv.weight.chunk(2, dim=0)
        return F.linear(z, w_k), F.linear(z, w_v)

    def _attend(self, q, k, v, key_bias):
        n, t = q.shape[:2]
        q, k, v = (z.reshape(n, -1, self.heads, self.dim_head).transpose(1, 2) for z in (q, k, v))
        with shape_free_kernels(q):  # the number of crops changes at every step
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_bias, scale=self.scale)
        return self.to_out(out.transpose(1, 2).reshape(n, t, self.heads * self.dim_head))


def feed_forward(dim: int, mult: int) -> nn.Sequential:
    # Indices .0 (norm), .1 and .3 (linears) are the release's checkpoint keys.
    inner = dim * mult
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, inner, bias=False), nn.GELU(), nn.Linear(inner, dim, bias=False))


class PerceiverResampler(nn.Module):
    def __init__(self, cfg: ResamplerConfig):
        super().__init__()
        self.cfg = cfg
        self.latents = nn.Parameter(torch.randn(cfg.num_latents, cfg.dim))
        if cfg.media_positions < 0:
            raise ValueError(f"resampler.media_positions must be >= 0, got {cfg.media_positions}")
        # Not in the released layout (export refuses a model that has it).
        self.media_pos = nn.Parameter(0.5 * torch.randn(cfg.media_positions, cfg.dim)) if cfg.media_positions else None
        if cfg.group_positions < 0:
            raise ValueError(f"resampler.group_positions must be >= 0, got {cfg.group_positions}")
        # Not in the released layout either.
        self.group_pos = nn.Parameter(0.02 * torch.randn(cfg.group_positions, cfg.out_dim)) if cfg.group_positions else None
        if cfg.image_positions < 0:
            raise ValueError(f"resampler.image_positions must be >= 0, got {cfg.image_positions}")
        # Nor this one. Zero at init (a no-op until trained or set, as the demo's
        # place_image_positions does); added by the model where it splices a sample's images
        # (XGenMM.fuse_inputs).
        self.image_pos = nn.Parameter(torch.zeros(cfg.image_positions, cfg.out_dim)) if cfg.image_positions else None
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(cfg.dim, cfg.dim_head, cfg.heads), feed_forward(cfg.dim, cfg.ff_mult)])
            for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(cfg.dim)
        self.projection = nn.Linear(cfg.dim, cfg.out_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, slots: torch.Tensor | None = None) -> torch.Tensor:
        """x: [N, P, D] tokens of N crops (or token groups); mask: [N, P], 1 = attend; slots: [N],
        each group's place in its image (needed with group position embeddings).
        Returns [N, num_latents, out_dim]."""
        n = x.shape[0]
        if self.group_pos is not None:
            if slots is None or slots.shape != (n,):
                raise ValueError(f"resampler: group position embeddings need one slot per token group ({n})")
            if bool((slots >= self.group_pos.shape[0]).any()):
                raise ValueError(f"resampler: an image has {int(slots.max()) + 1} token groups but "
                                 f"resampler.group_positions is {self.group_pos.shape[0]}")
        if self.media_pos is not None:
            if x.shape[1] != self.media_pos.shape[0]:
                raise ValueError(f"resampler: a token group has {x.shape[1]} tokens but resampler.media_positions is "
                                 f"{self.media_pos.shape[0]} (one position embedding per token of a group)")
            x = x + self.media_pos.to(x.dtype)
        latents = self.latents.unsqueeze(0).expand(n, -1, -1)
        key_bias = None
        if mask is not None and not bool(mask.all()):
            # Built once for all layers: padded media keys get -inf; the latents are always visible.
            keep = torch.cat((mask.bool(), mask.new_ones(n, self.cfg.num_latents, dtype=torch.bool)), dim=1)
            key_bias = torch.zeros(keep.shape, dtype=x.dtype, device=x.device).masked_fill_(~keep, float("-inf"))
            key_bias = key_bias[:, None, None, :]
        for i, (attn, ff) in enumerate(self.layers):
            latents = attn(x, latents, key_bias, shared=i == 0) + latents
            latents = ff(latents) + latents
        out = self.projection(self.norm(latents))
        if self.group_pos is not None:
            out = out + self.group_pos[slots.to(out.device)].to(out.dtype)[:, None, :]
        return out
