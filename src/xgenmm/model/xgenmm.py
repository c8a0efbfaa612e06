"""XGenMM: frozen vision encoder -> Perceiver resampler -> (fusion) -> causal LM.

The forward contract is documented once, in ARCHITECTURE.md."""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

from .anyres import grid_shape, group_index, group_mask
from .attention import ATTENTION, flatten_segments, flattened
from .config import XGenMMConfig
from .fusion import IGNORE_INDEX, FusedInputs, fuse, image_places, segment_attention_mask
from .resampler import PerceiverResampler
from .vision import VisionEncoder


@dataclass
class XGenMMOutput:
    loss: torch.Tensor | None  # token-mean next-token cross-entropy over supervised positions
    logits: torch.Tensor | None  # [B, L', V] over the fused sequence (None if return_logits=False)
    attention_mask: torch.Tensor  # [B, L'] of the fused sequence
    labels: torch.Tensor | None  # [B, L'] fused labels
    num_supervised: int = 0  # tokens the loss averages over
    past_key_values: object = None
    row_logps: torch.Tensor | None = None  # [B] per row, the sum of the supervised tokens' log-probabilities
    token_losses: torch.Tensor | None = None  # [num_supervised] each supervised token's cross-entropy, row-major


# A pytree node, so that whatever walks a module's output for its tensors (FSDP2 registering
# its pre-backward hooks up to torch 2.11, torch.compile, tree_map) finds the loss inside: as
# an opaque leaf, FSDP2 never re-gathers the root's parameters for backward.
# (`register_pytree_node` rather than `register_dataclass`, which torch has only since 2.7.)
torch.utils._pytree.register_pytree_node(
    XGenMMOutput,
    lambda out: ([getattr(out, f.name) for f in dataclasses.fields(out)], None),
    lambda values, _context: XGenMMOutput(*values),
)


def build_language_model(config: XGenMMConfig) -> nn.Module:
    text = dict(config.text)
    hf_config = AutoConfig.for_model(text.pop("model_type"), **text)
    # SDPA, plus padding-free attention for the training forward (model/attention.py).
    lm = AutoModelForCausalLM.from_config(hf_config, attn_implementation=ATTENTION)
    if config.lm_head_bias:
        # The release's LM head is a Linear with a bias (trained, so it must be kept).
        old = lm.get_output_embeddings()
        head = nn.Linear(old.in_features, old.out_features, bias=True)
        head.weight.data.copy_(old.weight.data)
        nn.init.zeros_(head.bias)
        lm.set_output_embeddings(head)
    return lm


class XGenMM(nn.Module):
    def __init__(self, config: XGenMMConfig, vision_tower: nn.Module | None = None, language_model: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.vision_encoder = VisionEncoder(config.vision, vision_tower)
        self.vision_tokenizer = PerceiverResampler(config.resampler)
        self.lang_model = language_model if language_model is not None else build_language_model(config)
        self.crop_side = config.image.image_size // self.vision_encoder.tower.config.patch_size
        self._image_tokens: dict | None = None  # see cache_image_tokens

    # ---- the four parts -------------------------------------------------------------
    @property
    def tokens_per_crop(self) -> int:
        return self.config.resampler.num_latents

    def tokens_per_image(self, num_crops: int) -> int:
        return num_crops * self.tokens_per_crop

    def cache_image_tokens(self, enabled: bool = True) -> None:
        """While the vision encoder and the resampler are both frozen, an image's tokens are a
        function of its pixels alone: keep them, per image tensor, for as long as that tensor
        lives (the loader's encoded-sample cache keeps the same tensors from epoch to epoch), so
        that the vision side runs once per image instead of once per epoch. Keyed by the tensor
        object, never by its contents: pixel tensors are not modified in place anywhere in the
        pipeline. On a GPU the trainer leaves the loader's pixel tensors on the host (they are
        the keys) and only the images not cached are copied to the device. The trainer turns it
        on for a stage whose config freezes both parts (`runtime.image_token_cache`) and off
        at the end of the stage."""
        if not enabled:
            self._image_tokens = None
            return
        trainable = [n for n, p in self.named_parameters()
                     if p.requires_grad and n.startswith(("vision_encoder.", "vision_tokenizer."))]
        if trainable:
            raise ValueError(f"the image-token cache needs a frozen vision encoder and resampler; {trainable[0]} is trainable")
        self._image_tokens = {}

    def encode_images(self, pixel_values: list[torch.Tensor], image_sizes: list | None) -> tuple[torch.Tensor, list[int]]:
        """The tokens of each image, [sum of tokens, D_lm], and the count per image (from the
        image-token cache where it is on, see `cache_image_tokens`)."""
        cache = self._image_tokens
        if cache is None:
            return self._encode_images(pixel_values, image_sizes)
        sizes = [tuple(int(v) for v in image_sizes[i]) if image_sizes is not None and i < len(image_sizes) else None
                 for i in range(len(pixel_values))]

        def cached(i: int):
            entry = cache.get(id(pixel_values[i]))
            if entry is None or entry[0]() is not pixel_values[i] or entry[1] != sizes[i]:
                return None
            return entry[2]

        parts = [cached(i) for i in range(len(pixel_values))]
        todo: dict[int, int] = {}  # tensor id -> first image index, for the images not cached
        for i, part in enumerate(parts):
            if part is None:
                todo.setdefault(id(pixel_values[i]), i)
        if todo:
            idx = list(todo.values())
            device = next(self.vision_encoder.parameters()).device  # keys may stay on the host
            new, counts = self._encode_images([pixel_values[i].to(device) for i in idx],
                                              None if image_sizes is None else [sizes[i] for i in idx])
            for i, tokens in zip(idx, new.split(counts)):
                key = id(pixel_values[i])

                def forget(ref, key=key):
                    if key in cache and cache[key][0] is ref:
                        del cache[key]

                cache[key] = (weakref.ref(pixel_values[i], forget), sizes[i], tokens.detach())
            parts = [part if part is not None else cached(i) for i, part in enumerate(parts)]
        return torch.cat(parts), [int(t.shape[0]) for t in parts]

    def _encode_images(self, pixel_values: list[torch.Tensor], image_sizes: list | None) -> tuple[torch.Tensor, list[int]]:
        """All crops of the batch through the vision encoder in one call, the anyres token
        groups gathered with one index, all groups through the resampler in one call.
        Returns ([sum of tokens, D_lm], tokens per image)."""
        crops_per_image = [int(p.shape[0]) for p in pixel_values]
        if any(n == 0 for n in crops_per_image):
            raise ValueError(f"image {crops_per_image.index(0)} has no crops")
        # A tensor passed several times (a shared few-shot demonstration) is encoded once.
        first_of: dict[int, int] = {}
        unique = []
        for p in pixel_values:
            if id(p) not in first_of:
                first_of[id(p)] = len(unique)
                unique.append(p)
        features = self.vision_encoder(torch.cat(unique))  # [N_unique_crops, P, C]
        if len(unique) < len(pixel_values):
            starts = torch.tensor([0] + [int(p.shape[0]) for p in unique]).cumsum(0)
            rows = torch.cat([torch.arange(starts[first_of[id(p)]], starts[first_of[id(p)] + 1]) for p in pixel_values])
            features = features[rows.to(features.device)]
        n_crops, p, c = features.shape
        side = self.crop_side
        if p != side * side:
            raise ValueError(f"vision tower gave {p} tokens per crop, expected {side}x{side}")
        flat = features.reshape(n_crops * p, c)
        index, masks, slots, first = [], [], [], 0
        grouping = self.config.image.token_grouping
        for i, n in enumerate(crops_per_image):
            base = torch.arange(first * p, (first + 1) * p)
            index.append(base.view(1, p))
            masks.append(torch.ones(1, p))
            if n > 1:
                if image_sizes is None or i >= len(image_sizes):
                    raise ValueError(f"image {i} has {n} crops (anyres) but no image size was given")
                size = tuple(int(s) for s in image_sizes[i])
                cols, rows = grid_shape(size, self.config.image.grids, self.config.image.image_size)
                if rows * cols != n - 1:
                    raise ValueError(f"image {i} of size {size} has {n} crops; its {cols}x{rows} grid needs {1 + rows * cols}")
                index.append(group_index(rows, cols, side, grouping) + (first + 1) * p)
                masks.append(group_mask(size, rows, cols, side, grouping))
            slots.append(torch.arange(n))  # the base crop, then the tile groups in order
            first += n
        groups = flat[torch.cat(index).to(flat.device)]  # [N_groups, P, C]
        mask = torch.cat(masks).to(device=flat.device, dtype=flat.dtype)
        tokens = self.vision_tokenizer(groups, mask, torch.cat(slots))  # [N_groups, T, D]
        return tokens.reshape(-1, tokens.shape[-1]), [self.tokens_per_image(n) for n in crops_per_image]

    def fuse_inputs(self, input_ids, attention_mask=None, pixel_values=None, image_sizes=None, labels=None,
                    segment_ids=None) -> FusedInputs:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        lm_dtype = self.lang_model.get_input_embeddings().weight.dtype
        text_embeds = self.lang_model.get_input_embeddings()(input_ids)
        if pixel_values:
            image_tokens, counts = self.encode_images(pixel_values, image_sizes)
        else:
            image_tokens, counts = text_embeds.new_zeros(0, text_embeds.shape[-1]), []
        tok = self.config.tokens
        image_pos = self.vision_tokenizer.image_pos
        if image_pos is not None and counts:
            place = image_places(input_ids, tok.image_token_id, segment_ids)  # [n_images]
            over = (place > image_pos.shape[0]).nonzero()
            if len(over):
                k = int(over[0, 0])
                row = int((input_ids == tok.image_token_id).nonzero()[k, 0])
                raise ValueError(f"sample {row}: image {int(place[k]) + 1} of the sample, but resampler.image_positions "
                                 f"({image_pos.shape[0]}) covers images 2 to {image_pos.shape[0] + 1}")
            rows = torch.cat((image_pos.new_zeros(1, image_pos.shape[1]), image_pos))  # the first image: none
            n = torch.as_tensor(counts, device=place.device)
            image_tokens = image_tokens + rows[torch.repeat_interleave(place, n).to(rows.device)].to(image_tokens.dtype)
        return fuse(input_ids, attention_mask, text_embeds, image_tokens.to(lm_dtype), counts, tok.image_token_id,
                    tok.placeholder_token_id, labels=labels, segment_ids=segment_ids)

    def forward(self, input_ids, attention_mask=None, pixel_values=None, image_sizes=None, labels=None,
                segment_ids=None, return_logits: bool = True, return_row_logps: bool = False,
                return_token_losses: bool = False) -> XGenMMOutput:
        fused = self.fuse_inputs(input_ids, attention_mask, pixel_values, image_sizes, labels, segment_ids)
        hidden = self._unpadded_hidden(fused) if not return_logits else None
        if hidden is None:
            attn = segment_attention_mask(fused.segment_ids) if fused.segment_ids is not None else fused.attention_mask
            hidden = self.lang_model.get_decoder()(
                inputs_embeds=fused.inputs_embeds, attention_mask=attn, position_ids=fused.position_ids, use_cache=False
            ).last_hidden_state
        head = self.lang_model.get_output_embeddings()
        loss, n_sup, row_logps, token_losses = None, 0, None, None
        if return_row_logps and fused.labels is None:
            raise ValueError("return_row_logps needs labels (the tokens whose log-probabilities are summed)")
        if fused.labels is not None:
            # Only supervised positions go through the LM head for the loss.
            target = fused.labels[:, 1:]
            keep = target != IGNORE_INDEX
            n_sup = int(keep.sum())
            if n_sup:
                sup_logits = head(hidden[:, :-1][keep]).float()
                if return_token_losses:
                    token_losses = F.cross_entropy(sup_logits, target[keep], reduction="none")
                    loss = token_losses.mean()
                else:
                    loss = F.cross_entropy(sup_logits, target[keep])
                if return_row_logps:
                    logp = sup_logits.log_softmax(-1).gather(1, target[keep][:, None]).squeeze(1)
                    row_logps = logp.new_zeros(keep.shape[0]).index_add(0, keep.nonzero()[:, 0], logp)
            else:
                loss = hidden.sum() * 0.0  # no supervised token: a zero that keeps the graph
                if return_token_losses:
                    token_losses = hidden.new_zeros(0) + loss
                if return_row_logps:
                    row_logps = hidden.new_zeros(keep.shape[0]) + loss
        logits = head(hidden) if return_logits else None
        return XGenMMOutput(loss, logits, fused.attention_mask, fused.labels, n_sup, row_logps=row_logps,
                            token_losses=token_losses)

    def _unpadded_hidden(self, fused: FusedInputs) -> torch.Tensor | None:
        """The LM's last hidden states [B, L', D] computed without padding: the real positions
        of every row (or packed segment) are flattened into one row and each sequence attends
        to itself alone (model/attention.py). Padded positions come back as zeros; real ones
        equal the padded computation's to float rounding. None where it does not apply (the LM
        has another attention implementation, or the batch has no padding to drop)."""
        lm_config = self.lang_model.config
        if getattr(lm_config, "_attn_implementation", None) != ATTENTION:
            return None
        mask = fused.attention_mask
        if fused.segment_ids is None and bool(mask.all()):
            return None  # nothing to drop: the plain causal path is already padding-free
        found = flatten_segments(mask, fused.segment_ids, getattr(lm_config, "sliding_window", None))
        if found is None:
            return None
        flat, segments = found
        b, length, dim = fused.inputs_embeds.shape
        embeds = fused.inputs_embeds.reshape(b * length, dim)[flat][None]
        positions = fused.position_ids.reshape(-1)[flat][None]
        with flattened(segments) as segment_kwargs:
            hidden = self.lang_model.get_decoder()(inputs_embeds=embeds, position_ids=positions, use_cache=False,
                                                   **segment_kwargs).last_hidden_state[0]
        return hidden.new_zeros(b * length, hidden.shape[-1]).index_copy(0, flat, hidden).view(b, length, -1)

    def generate(self, input_ids, attention_mask=None, pixel_values=None, image_sizes=None, **kwargs):
        """Batched generation (see generation.generate). Runs in inference mode; the returned
        tensors are ordinary ones, usable anywhere (e.g. as inputs of a training step)."""
        from .generation import generate

        out = generate(self, input_ids, attention_mask, pixel_values, image_sizes, **kwargs)
        return tuple(t.clone() for t in out) if isinstance(out, tuple) else out.clone()

    # ---- bookkeeping ------------------------------------------------------------------
    def parameter_counts(self) -> dict[str, int]:
        parts = {"vision_encoder": self.vision_encoder, "vision_tokenizer": self.vision_tokenizer, "lang_model": self.lang_model}
        counts = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
        counts["total"] = sum(counts.values())
        return counts

    def flops_per_sample(self, text_tokens: int, crops: int, training: bool = True) -> float:
        """Model FLOPs of one sample (matmuls only): the frozen vision tower forward, the
        resampler and LM forward (+ backward x2 when training), attention included.
        For MFU: achieved FLOP/s = this x samples/s."""
        return self.flops_counter(training)(text_tokens, crops)

    def flops_counter(self, training: bool = True):
        """`flops_per_sample` as a function of (text tokens, crops) with the model's constants
        read once: the trainer counts every sample of every step, and walking the LM's modules
        for each one cost about 2% of a small model's step. Build it again after the model's
        layers change (LoRA adapters added or merged)."""
        v = self.vision_encoder.tower.config
        side = self.crop_side
        p = side * side
        h = v.hidden_size  # encoder layers + patch embedding (the unused pooling head is not run)
        vis_params = v.num_hidden_layers * (4 * h * h + 2 * h * v.intermediate_size) + 3 * v.patch_size**2 * h
        vision = 2 * vis_params * p + 4 * v.num_hidden_layers * p * p * v.hidden_size  # per crop
        r = self.config.resampler
        inner, t = r.heads * r.dim_head, r.num_latents
        per_layer = 2 * (p + t) * r.dim * 2 * inner + 2 * t * r.dim * inner + 4 * t * (p + t) * inner \
            + 2 * t * inner * r.dim + 4 * t * r.dim * r.dim * r.ff_mult
        resampler = r.depth * per_layer + 2 * t * r.dim * r.out_dim  # per crop
        lm_cfg = self.lang_model.config
        lm_params = sum(m.weight.numel() for m in self.lang_model.modules() if isinstance(m, nn.Linear))
        attn = 2 * lm_cfg.num_hidden_layers * lm_cfg.hidden_size  # x seq^2; causal: half of 4*L*S^2*H
        mult = 3 if training else 1

        def count(text_tokens: int, crops: int) -> float:
            seq = text_tokens + crops * t
            lm = 2 * lm_params * seq + attn * seq * seq
            return float(crops * vision + mult * (crops * resampler + lm))

        return count

    def save_pretrained(self, directory, processor=None, max_shard_size: str | int = "2GB") -> None:
        from .checkpoint import save_pretrained

        save_pretrained(self, directory, processor=processor, max_shard_size=max_shard_size)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, device=None, dtype=None) -> "XGenMM":
        from .checkpoint import load_pretrained

        return load_pretrained(name_or_path, device=device, dtype=dtype)
