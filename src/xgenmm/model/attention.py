"""Padding-free ("varlen") attention for the training forward.

The LM is built with the attention implementation `xgenmm_sdpa`: transformers' SDPA
attention, with the same masks (the SDPA mask builder is registered under this name), plus
one more way to call it. Given `xgenmm_segments` (the [start, end) bounds of each sequence
in one flattened row), each sequence attends causally to itself alone, through SDPA's unmasked
causal kernel, and no position is padding. `XGenMM.forward` uses it when no logits are asked
for (training): every linear layer of the LM then runs on the real tokens only, and attention
costs the sum of the squared sequence lengths instead of rows x longest row squared, with no
mask to read.

The segments travel as the keyword argument `xgenmm_segments`, which transformers' decoders
pass down to their attention (and which activation checkpointing keeps for the
recomputation), inside `flattened(segments)`, a context manager during which the registered
mask builder returns no mask: none is read, and the library's packed-sequence mask for a
flattened row would be an [N, N] boolean tensor (N = every real token of the batch). A
decoder that does not pass its keyword arguments down gets the segments from the context
during its forward, but not in an activation-checkpointing recomputation, which runs after
the block has closed: such a decoder must not combine the two.
"""

from __future__ import annotations

import contextlib
import contextvars

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTENTION = "xgenmm_sdpa"
SEGMENTS_KWARG = "xgenmm_segments"


_ACTIVE_SEGMENTS: contextvars.ContextVar = contextvars.ContextVar("xgenmm_active_segments", default=None)


@contextlib.contextmanager
def flattened(segments: list[tuple[int, int]]):
    """Within this block, the LM's attention treats its one input row as the given sequences,
    each attending causally to itself alone, and no attention mask is built. Yields the keyword
    arguments to pass to the decoder call (`{SEGMENTS_KWARG: segments}`)."""
    token = _ACTIVE_SEGMENTS.set(list(segments))
    try:
        yield {SEGMENTS_KWARG: list(segments)}
    finally:
        _ACTIVE_SEGMENTS.reset(token)


def varlen_sdpa_mask(*args, **kwargs):
    """The SDPA mask builder, except inside `flattened(...)`, where the attention reads the
    segments and no mask is needed."""
    if _ACTIVE_SEGMENTS.get() is not None:
        return None
    return sdpa_mask(*args, **kwargs)


def varlen_sdpa_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """transformers attention-interface function: [B, H, L, D] in, ([B, L, H, D], None) out."""
    segments = kwargs.pop(SEGMENTS_KWARG, None)
    if segments is None:
        segments = _ACTIVE_SEGMENTS.get()
    if segments is None and query.shape[2] == 1 and not torch.is_grad_enabled():
        return _one_query_attention(module, query, key, value, attention_mask, scaling)
    if segments is None:
        with shape_free_kernels(query):
            return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                          **kwargs)
    if query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        raise ValueError(f"{SEGMENTS_KWARG}: expected one flattened row without a cache, got query {tuple(query.shape)} "
                         f"and key {tuple(key.shape)}")
    gqa = query.shape[1] != key.shape[1]
    p = dropout if module.training else 0.0
    # `split` rather than one slice per segment: its backward writes every segment's gradient
    # into one tensor, where each slice's backward would zero-fill and add a full-size one.
    lengths = [e - s for s, e in segments]
    if segments[0][0] != 0 or segments[-1][1] != query.shape[2] or any(
            a[1] != b[0] for a, b in zip(segments, segments[1:])):
        raise ValueError(f"{SEGMENTS_KWARG}: the segments must tile the row [0, {query.shape[2]}) in order, got {segments}")
    with shape_free_kernels(query):
        outs = [F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True, scale=scaling, enable_gqa=gqa)
                for q, k, v in zip(query.split(lengths, 2), key.split(lengths, 2), value.split(lengths, 2))]
    return torch.cat([o.transpose(1, 2) for o in outs], dim=1), None


def shape_free_kernels(query: torch.Tensor):
    """On CUDA, the SDPA kernels that need no per-shape setup. cuDNN's fused attention builds an
    execution plan for each new shape (about 0.1 s each, forward and backward, on an H200 with
    torch 2.11), and training shapes are ever new: the sequences of a padding-free or packed
    batch, the resampler's number of crops, a batch's longest prompt. A step of the tiny model
    took seconds. Flash attention (half precision, no mask) and the memory-efficient kernel
    (any precision, any mask) have no such setup; the math kernel is the last resort."""
    if not query.is_cuda:
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def _one_query_attention(module, query, key, value, attention_mask, scaling):
    """A decoding step (one query per row): two batched matmuls and a softmax, which for one
    query cost far less than the fused SDPA kernels' setup on CPU."""
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scores = torch.matmul(query, key.transpose(-1, -2)) * (scaling if scaling is not None else query.shape[-1] ** -0.5)
    if attention_mask is not None:
        mask = attention_mask[..., -key.shape[-2]:]
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    out = torch.matmul(scores.softmax(-1), value)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION, varlen_sdpa_attention)
AttentionMaskInterface.register(ATTENTION, varlen_sdpa_mask)


def flatten_segments(attention_mask: torch.Tensor, segment_ids: torch.Tensor | None,
                     max_length: int | None = None) -> tuple[torch.Tensor, list[tuple[int, int]]] | None:
    """The real positions of a [B, L] batch in row-major order ([N] flat indices into B*L) and
    each sequence's [start, end) among them: a row, or a packed row's segment. None where the
    batch cannot be flattened exactly: a sequence whose positions are not contiguous (a hole
    in the mask), or one longer than `max_length` (a sliding window: the masked path keeps it)."""
    real = attention_mask.bool()
    seq = segment_ids.long() if segment_ids is not None else real.long()
    width = int(seq.max()) + 1 if seq.numel() else 1
    rows = torch.arange(seq.shape[0], device=seq.device)[:, None]
    flat = real.flatten().nonzero().squeeze(1)
    if flat.numel() == 0:
        return None
    key = (seq + rows * width).flatten()[flat]
    change = torch.nonzero(key[1:] != key[:-1]).squeeze(1) + 1
    starts = [0] + change.tolist()
    ends = starts[1:] + [int(flat.numel())]
    if len(starts) != int(torch.unique(key).numel()):
        return None  # a sequence split by a hole
    # Inside a sequence, positions must be consecutive columns (no masked position between).
    if bool((flat[1:] - flat[:-1] != 1)[(key[1:] == key[:-1])].any()):
        return None
    if max_length is not None and max(e - s for s, e in zip(starts, ends)) > max_length:
        return None
    return flat, list(zip(starts, ends))
