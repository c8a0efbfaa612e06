"""Language-stream fusion: splice each image's tokens into the LM's input embeddings
(reference section 4), for a whole batch at once, with no per-token Python loops.

Two conventions, told apart per image by what follows its `<image>` tag:
- instruct: a lone `<image>` is replaced by the image's n_crops x T tokens; later positions shift;
- base: `<image>` followed by exactly (n - 1) `<image placeholder>` tokens; the n positions are
  overwritten in place (the sequence keeps its length).
Both are one mechanism: placeholders count zero positions and the tag counts n.
Unlike the release, which searches for the tag id and checks nothing, every mismatch is an
error naming the sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE_INDEX = -100


@dataclass
class FusedInputs:
    inputs_embeds: torch.Tensor  # [B, L', D]
    attention_mask: torch.Tensor  # [B, L'] 1 = real token (image tokens included)
    position_ids: torch.Tensor  # [B, L']
    labels: torch.Tensor | None  # [B, L'], IGNORE_INDEX on image tokens and padding
    segment_ids: torch.Tensor | None  # [B, L'], 0 = padding, k = k-th packed sample
    image_mask: torch.Tensor  # [B, L'] True where an image token sits


def plan_counts(input_ids: torch.Tensor, image_token_id: int, placeholder_token_id: int,
                tokens_per_image: list[int]) -> torch.Tensor:
    """[B, L] number of fused positions each input token becomes; raises on any mismatch."""
    is_tag = input_ids == image_token_id
    is_ph = input_ids == placeholder_token_id
    tags_per_row = is_tag.sum(1).tolist()
    if sum(tags_per_row) != len(tokens_per_image):
        raise ValueError(
            f"the batch has {sum(tags_per_row)} <image> tags (per sample: {tags_per_row}) "
            f"but {len(tokens_per_image)} images were given"
        )
    counts = torch.ones_like(input_ids)
    if is_ph.any():
        # Each placeholder must continue a run that starts at an <image> tag of the same row.
        prev = torch.nn.functional.pad(input_ids[:, :-1], (1, 0), value=-1)
        bad = is_ph & (prev != image_token_id) & (prev != placeholder_token_id)
        if bad.any():
            row = int(bad.nonzero()[0, 0])
            raise ValueError(f"sample {row}: <image placeholder> not directly after an <image> tag")
        tag_of = (is_tag.flatten().cumsum(0) - 1).view_as(input_ids)  # global tag index, row-major
        n_ph = torch.bincount(tag_of[is_ph], minlength=len(tokens_per_image))
        counts[is_ph] = 0
    else:
        n_ph = torch.zeros(len(tokens_per_image), dtype=torch.long)
    n = torch.as_tensor(tokens_per_image, dtype=torch.long, device=input_ids.device)
    n_ph = n_ph.to(input_ids.device)
    wrong = (n_ph != 0) & (n_ph != n - 1)
    if wrong.any():
        k = int(wrong.nonzero()[0, 0])
        rows = is_tag.nonzero()[:, 0]
        raise ValueError(
            f"sample {int(rows[k])}: image {k} has <image> + {int(n_ph[k])} placeholders, "
            f"but the image gives {int(n[k])} tokens (expected {int(n[k]) - 1} placeholders, or none)"
        )
    counts[is_tag] = n
    return counts


def fuse(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    text_embeds: torch.Tensor,
    image_tokens: torch.Tensor,
    tokens_per_image: list[int],
    image_token_id: int,
    placeholder_token_id: int,
    labels: torch.Tensor | None = None,
    segment_ids: torch.Tensor | None = None,
) -> FusedInputs:
    """Splice `image_tokens` ([sum(tokens_per_image), D], images in tag order, row by row)
    into `text_embeds` ([B, L, D]). Left-padded batches stay left-padded (generation),
    others are right-padded (training)."""
    b, length, dim = text_embeds.shape
    device = text_embeds.device
    counts = plan_counts(input_ids, image_token_id, placeholder_token_id, tokens_per_image)
    # Padding tokens take no fused position: rows are re-padded to the longest real row, so
    # the LM never runs on the text padding of the input batch.
    padded_tags = (input_ids == image_token_id) & (attention_mask == 0)
    if padded_tags.any():
        raise ValueError(f"sample {int(padded_tags.nonzero()[0, 0])}: an <image> tag sits at a padding position")
    counts = counts.masked_fill(attention_mask == 0, 0)
    row_len = counts.sum(1)
    new_len = int(row_len.max()) if b else 0
    left_padded = bool((attention_mask[:, -1] == 1).all() and (attention_mask[:, 0] == 0).any())
    offset = (new_len - row_len) if left_padded else torch.zeros_like(row_len)
    start = offset[:, None] + counts.cumsum(1) - counts  # first fused position of each input token
    flat_start = start + torch.arange(b, device=device)[:, None] * new_len

    is_tag = input_ids == image_token_id
    is_text = (counts == 1) & ~is_tag
    text_dest = flat_start[is_text]
    tag_start = flat_start[is_tag]  # row-major order = image order
    n = torch.as_tensor(tokens_per_image, dtype=torch.long, device=device)
    within = torch.arange(int(n.sum()), device=device) - torch.repeat_interleave(n.cumsum(0) - n, n)
    image_dest = torch.repeat_interleave(tag_start, n) + within

    embeds = text_embeds.new_zeros(b * new_len, dim)
    embeds[text_dest] = text_embeds[is_text]
    if len(image_dest):
        embeds[image_dest] = image_tokens.to(embeds.dtype)

    def scatter(values: torch.Tensor, fill: int, image_values: torch.Tensor | int) -> torch.Tensor:
        out = values.new_full((b * new_len,), fill)
        out[text_dest] = values[is_text]
        out[image_dest] = image_values if isinstance(image_values, int) else image_values
        return out.view(b, new_len)

    mask = scatter(attention_mask.long(), 0, 1)
    image_mask = torch.zeros(b * new_len, dtype=torch.bool, device=device)
    image_mask[image_dest] = True
    fused_labels = scatter(labels, IGNORE_INDEX, IGNORE_INDEX) if labels is not None else None
    fused_segments = None
    if segment_ids is not None:
        fused_segments = scatter(segment_ids.long(), 0, torch.repeat_interleave(segment_ids[is_tag].long(), n))
        position_ids = segment_positions(fused_segments)
    else:
        position_ids = (mask.cumsum(1) - 1).clamp_(min=0)
    return FusedInputs(embeds.view(b, new_len, dim), mask, position_ids, fused_labels, fused_segments,
                       image_mask.view(b, new_len))


def image_places(input_ids: torch.Tensor, image_token_id: int, segment_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Each image's place among its sample's images (0 the first), images in tag order, row by
    row; with packing (`segment_ids`), the places restart at every packed sample."""
    rows, cols = (input_ids == image_token_id).nonzero(as_tuple=True)
    if rows.numel() == 0:
        return rows
    key = rows * (input_ids.shape[1] + 1)
    if segment_ids is not None:
        key = key + segment_ids[rows, cols].long()
    idx = torch.arange(rows.numel(), device=rows.device)
    starts = torch.where(key != torch.nn.functional.pad(key[:-1], (1, 0), value=-1), idx, torch.zeros_like(idx))
    return idx - starts.cummax(0).values


def segment_positions(segment_ids: torch.Tensor) -> torch.Tensor:
    """Positions that restart at 0 at the start of every packed segment."""
    idx = torch.arange(segment_ids.shape[1], device=segment_ids.device).expand_as(segment_ids)
    prev = torch.nn.functional.pad(segment_ids[:, :-1], (1, 0), value=-1)
    starts = torch.where(segment_ids != prev, idx, torch.zeros_like(idx))
    return idx - starts.cummax(1).values


def segment_attention_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """[B, 1, L, L] boolean mask: causal within a segment, nothing across segments. Padding
    rows see only themselves (so that no softmax row is empty)."""
    length = segment_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=segment_ids.device).tril_()
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    real = (segment_ids > 0)[:, None, :]
    allowed = same & real & causal
    eye = torch.eye(length, dtype=torch.bool, device=segment_ids.device)
    allowed |= eye & (segment_ids == 0)[:, :, None]
    return allowed[:, None]
