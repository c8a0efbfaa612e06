"""Batched generation with a KV cache: greedy or sampling (temperature, top-k, top-p), rows
stop independently on the end tokens. Prompts are fused once (images spliced in), then each
step feeds one token per row."""

from __future__ import annotations

import contextlib
import inspect

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer

from .attention import ATTENTION, flatten_segments, flattened


class PreallocatedLayer(DynamicLayer):
    """A KV-cache layer that writes each step's keys and values into a buffer allocated once
    for the whole generation (grown by doubling if ever outgrown), instead of concatenating
    the whole cache anew at every step as `DynamicLayer` does. `keys` and `values` are views of
    the filled part, so everything that reads a `DynamicLayer` reads this one the same way."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self._length = 0
        self._kbuf = self._vbuf = None

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if not self._owns_views():  # first write, or the tensors were replaced from outside (cropped, reordered)
            old = (self.keys, self.values) if self.keys.dim() == 4 else None
            self._length = old[0].shape[-2] if old else 0
            self._allocate(self._length + key_states.shape[-2], key_states, old)
        n = self._length + key_states.shape[-2]
        if n > self._kbuf.shape[-2]:
            self._allocate(max(n, 2 * self._kbuf.shape[-2]), key_states, (self.keys, self.values))
        self._kbuf[..., self._length:n, :] = key_states
        self._vbuf[..., self._length:n, :] = value_states
        self._length = n
        self.keys, self.values = self._kbuf[..., :n, :], self._vbuf[..., :n, :]
        return self.keys, self.values

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        """Rows `beam_idx` of the cache, in that order (beam search; the row count may change),
        kept in a buffer of the same capacity."""
        if self._kbuf is None or not self._owns_views():
            return super().reorder_cache(beam_idx)
        idx, n = beam_idx.to(self._kbuf.device), self._length
        kbuf = self._kbuf.new_empty((len(idx), *self._kbuf.shape[1:]))
        vbuf = self._vbuf.new_empty((len(idx), *self._vbuf.shape[1:]))
        kbuf[..., :n, :] = self._kbuf[..., :n, :].index_select(0, idx)
        vbuf[..., :n, :] = self._vbuf[..., :n, :].index_select(0, idx)
        self._kbuf, self._vbuf = kbuf, vbuf
        self.keys, self.values = kbuf[..., :n, :], vbuf[..., :n, :]

    def _owns_views(self) -> bool:
        return (self._kbuf is not None and self.keys.dim() == 4 and self.keys.data_ptr() == self._kbuf.data_ptr()
                and self.keys.shape[:-2] == self._kbuf.shape[:-2] and self.keys.shape[-2] == self._length)

    def _allocate(self, size: int, like: torch.Tensor, old) -> None:
        shape = (*like.shape[:-2], max(size, self.capacity), like.shape[-1])
        kbuf, vbuf = like.new_empty(shape), like.new_empty(shape)
        if old is not None and self._length:
            kbuf[..., :self._length, :] = old[0]
            vbuf[..., :self._length, :] = old[1]
        self._kbuf, self._vbuf = kbuf, vbuf


def new_cache(lm_config, capacity: int) -> Cache:
    """A KV cache for `capacity` positions: preallocated layers, unless the LM has a sliding
    window shorter than that (the library's sliding-window cache keeps its semantics)."""
    text = lm_config.get_text_config(decoder=True)
    window = getattr(text, "sliding_window", None)
    if window and capacity > window:
        return DynamicCache(config=lm_config)
    return Cache(layers=[PreallocatedLayer(capacity) for _ in range(text.num_hidden_layers)])


SKINNY_ROWS = 16


def _skinny_linear_forward(module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    rows = x.numel() // x.shape[-1] if x.dim() else 0
    if rows == 0 or rows > SKINNY_ROWS or x.device.type != "cpu" or torch.is_grad_enabled():
        return torch.nn.functional.linear(x, module.weight, module.bias)
    flat = x.reshape(rows, x.shape[-1])
    out = torch.mm(module.weight, flat.t()).t()  # weight-major: the weight is streamed once, not packed
    if module.bias is not None:
        out = out + module.bias
    return out.reshape(*x.shape[:-1], module.weight.shape[0])


@contextlib.contextmanager
def skinny_linears(module: torch.nn.Module):
    """While generating on CPU, compute each `nn.Linear` of a few rows (a decoding step's one
    token per row) as W @ x^T instead of x @ W^T. Both are the same product, but for a handful
    of rows against a weight that does not fit the cache, the BLAS path behind `F.linear` packs
    the whole weight at every call (a [4, 256] x [256, 2048] product: 0.8 ms) where the
    weight-major product streams it once (0.2 ms). Row counts above `SKINNY_ROWS`, autograd and
    other devices take the usual path. Only the forward of plain `nn.Linear` instances that
    carry no per-instance forward of their own is replaced, and always restored."""
    patched = [m for m in module.modules() if type(m) is torch.nn.Linear and "forward" not in m.__dict__]
    try:
        for m in patched:
            m.forward = _skinny_linear_forward.__get__(m)
        yield
    finally:
        for m in patched:
            m.__dict__.pop("forward", None)


def _left_align(fused):
    """Move right padding to the left so that every row's last position is its last token."""
    mask = fused.attention_mask
    if not bool((mask[:, -1] == 0).any()):
        return fused.inputs_embeds, mask
    length = mask.shape[1]
    shift = (length - mask.sum(1))[:, None]  # pad count per row (right-padded rows)
    idx = (torch.arange(length, device=mask.device)[None] - shift) % length
    embeds = torch.gather(fused.inputs_embeds, 1, idx[..., None].expand_as(fused.inputs_embeds))
    return embeds, torch.gather(mask, 1, idx)


def _sample(logits: torch.Tensor, temperature: float, top_k: int, top_p: float, generator) -> torch.Tensor:
    logits = logits / max(temperature, 1e-5)
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) > top_p  # keep the smallest set reaching top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


_CACHE_KWARG: dict[type, str] = {}


def _cache(decoder, cache) -> dict:
    """`{name: cache}` under the name the LM's forward takes its KV cache by: `cache` in the
    transformers releases that renamed it (they still take `past_key_values` with a
    deprecation warning, until 5.40), `past_key_values` in earlier ones and in backbones that
    kept the old name."""
    kind = type(decoder)
    if kind not in _CACHE_KWARG:
        params = inspect.signature(kind.forward).parameters
        _CACHE_KWARG[kind] = "cache" if "cache" in params else "past_key_values"
    return {_CACHE_KWARG[kind]: cache}


def _prefill(decoder, embeds, mask, positions, new_cache, max_padding: float = 0.15):
    """Run the prompt through the LM, filling a KV cache; returns (last hidden state per row,
    cache). A batch with much left padding is prefilled without its padding, and the rows'
    caches are left-padded into one (padded positions are masked in every later step), so no
    compute goes to padding and each row's prefill is exactly its prefill alone: in one call
    with the rows flattened into one sequence each attending to itself (model/attention.py),
    or row by row where the LM's attention cannot do that."""
    b, length = mask.shape
    real = mask.sum(1)
    window = getattr(decoder.config, "sliding_window", None)
    if b == 1 or float(real.sum()) >= (1 - max_padding) * b * length or (window and length > window):
        cache = new_cache()
        hidden = decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                         **_cache(decoder, cache), use_cache=True).last_hidden_state
        return hidden[:, -1], cache
    found = flatten_segments(mask, None) if getattr(decoder.config, "_attn_implementation", None) == ATTENTION else None
    if found is not None:
        flat, segments = found
        flat_cache = new_cache()
        with flattened(segments) as segment_kwargs:
            hidden = decoder(inputs_embeds=embeds.reshape(b * length, -1)[flat][None],
                             position_ids=positions.reshape(-1)[flat][None], **_cache(decoder, flat_cache),
                             use_cache=True, **segment_kwargs).last_hidden_state[0]
        last = hidden[[e - 1 for _, e in segments]]
        layers = [[(layer.keys[:, :, s:e], layer.values[:, :, s:e]) for s, e in segments] for layer in flat_cache.layers]
    else:
        last, per_row = [], []
        for i, n in enumerate(int(n) for n in real):
            cache = new_cache()
            hidden = decoder(inputs_embeds=embeds[i:i + 1, length - n:], position_ids=positions[i:i + 1, length - n:],
                             **_cache(decoder, cache), use_cache=True).last_hidden_state
            last.append(hidden[:, -1])
            per_row.append(cache)
        last = torch.cat(last)
        layers = [[(c.layers[j].keys, c.layers[j].values) for c in per_row] for j in range(len(per_row[0].layers))]
    merged = new_cache()
    for j, rows in enumerate(layers):
        pad = [length - k.shape[-2] for k, _ in rows]
        merged.update(torch.cat([torch.nn.functional.pad(k, (0, 0, p, 0)) for (k, _), p in zip(rows, pad)]),
                      torch.cat([torch.nn.functional.pad(v, (0, 0, p, 0)) for (_, v), p in zip(rows, pad)]), j)
    return last, merged


@torch.inference_mode()
def generate(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    pixel_values: list | None = None,
    image_sizes: list | None = None,
    max_new_tokens: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_token_id: int | list[int] | None = None,
    pad_token_id: int | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    output_logits: bool = False,
    num_beams: int = 1,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
):
    """Returns the new tokens [B, n] (rows that stopped early are filled with the pad id);
    with output_logits=True, also the raw logits of every step [B, n, V]. num_beams > 1:
    beam search (`beam_search`, Hugging Face's with `length_penalty` and `early_stopping`);
    each row's best sequence."""
    tok = model.config.tokens
    eos = tok.eos_token_ids if eos_token_id is None else ([eos_token_id] if isinstance(eos_token_id, int) else eos_token_id)
    pad = tok.pad_token_id if pad_token_id is None else pad_token_id
    if not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(f"num_beams must be a positive integer, got {num_beams!r}")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
    if early_stopping not in (False, True, "never"):
        raise ValueError(f"early_stopping must be False, True or 'never', got {early_stopping!r}")
    if num_beams > 1 and (do_sample or output_logits or not use_cache):
        raise ValueError("beam search (num_beams > 1) decodes with the KV cache, without sampling and without "
                         "output_logits")
    fused = model.fuse_inputs(input_ids, attention_mask, pixel_values, image_sizes)
    embeds, mask = _left_align(fused)
    decoder = model.lang_model.get_decoder()
    head = model.lang_model.get_output_embeddings()
    embed = model.lang_model.get_input_embeddings()
    b = embeds.shape[0]
    positions = (mask.cumsum(1) - 1).clamp_(min=0)
    if num_beams > 1:
        with skinny_linears(model.lang_model):
            last, cache = _prefill(decoder, embeds, mask, positions,
                                   lambda: new_cache(model.lang_model.config, embeds.shape[1] + max_new_tokens))
            return beam_search(decoder, head, embed, last, cache, mask, positions, max_new_tokens, num_beams,
                               length_penalty, early_stopping, eos, pad)
    cache = None
    done = torch.zeros(b, dtype=torch.bool, device=embeds.device)
    eos_t = torch.as_tensor(eos, device=embeds.device)
    out_tokens, out_logits = [], []
    step_embeds, step_pos = embeds, positions
    with skinny_linears(model.lang_model):  # the decoding steps' few-row products
        for step in range(max_new_tokens):
            if use_cache and step == 0:
                capacity = embeds.shape[1] + max_new_tokens
                last, cache = _prefill(decoder, embeds, mask, positions,
                                       lambda: new_cache(model.lang_model.config, capacity))
            else:
                # One new token per row attends to every unmasked cached position: the 4D mask is
                # the 2D one (the library returns a given 4D mask as is, skipping its mask builder).
                step_mask = mask[:, None, None, :].bool() if use_cache else mask
                last = decoder(inputs_embeds=step_embeds, attention_mask=step_mask, position_ids=step_pos,
                               **_cache(decoder, cache), use_cache=use_cache).last_hidden_state[:, -1]
            logits = head(last).float()
            if output_logits:
                out_logits.append(logits)
            nxt = _sample(logits, temperature, top_k, top_p, generator) if do_sample else logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            out_tokens.append(nxt)
            done |= torch.isin(nxt, eos_t)
            if bool(done.all()):
                break
            new_embed = embed(nxt)[:, None]
            mask = torch.cat((mask, mask.new_ones(b, 1)), 1)
            next_pos = positions[:, -1:] + 1
            positions = torch.cat((positions, next_pos), 1)
            if use_cache:
                step_embeds, step_pos = new_embed, next_pos
            else:
                embeds = torch.cat((embeds, new_embed), 1)
                step_embeds, step_pos = embeds, positions
    tokens = torch.stack(out_tokens, 1) if out_tokens else input_ids.new_zeros(b, 0)
    if output_logits:
        return tokens, torch.stack(out_logits, 1)
    return tokens


def beam_search(decoder, head, embed, last: torch.Tensor, cache: Cache, mask: torch.Tensor, positions: torch.Tensor,
                max_new_tokens: int, num_beams: int, length_penalty: float, early_stopping: bool | str, eos: list[int],
                pad: int) -> torch.Tensor:
    """Beam search from prefilled prompts (`last`: each row's last hidden state, `cache` its KV
    cache, `mask` / `positions` its left-padded attention mask and positions) as Hugging Face's
    `generate(num_beams=K)` runs it (transformers 5): every step keeps the max(2, 1 + number of
    end tokens) * K best continuations of the K beams by summed log-probability; one that ends
    on an end token among the K best is a finished hypothesis scored sum /
    length**length_penalty (its length counts the end token), the K best that do not end go
    on; a row stops once no running beam can beat its K finished ones (early_stopping=False:
    judged at the current length; "never": at `max_new_tokens` when length_penalty > 0; True:
    as soon as K are finished); at `max_new_tokens` the K best continuations finish. Returns
    each row's best hypothesis [B, n], filled with `pad` after its end."""

    def pick(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:  # x[b, idx[b, j]] for every row b
        return torch.gather(x, 1, idx.view(*idx.shape, *[1] * (x.dim() - 2)).expand(*idx.shape, *x.shape[2:]))

    b, k = last.shape[0], num_beams
    dev = last.device
    eos_t = torch.as_tensor(eos, device=dev, dtype=torch.long)
    keep = max(2, 1 + len(eos)) * k
    top_k_mask = torch.arange(keep, device=dev) < k
    big = -1.0e9
    rows = torch.arange(b, device=dev).repeat_interleave(k)
    cache.reorder_cache(rows)  # each prompt's cache, once per beam
    last, mask, positions = last[rows], mask[rows], positions[rows]
    running = torch.full((b, k, max_new_tokens), pad, dtype=torch.long, device=dev)
    running_scores = torch.zeros(b, k, device=dev)
    running_scores[:, 1:] = big  # only the first beam expands at the first step
    done_seqs = running.clone()
    done_scores = torch.full((b, k), big, device=dev)
    done_lens = torch.zeros(b, k, dtype=torch.long, device=dev)
    finished = torch.zeros(b, k, dtype=torch.bool, device=dev)
    open_rows = torch.ones(b, 1, dtype=torch.bool, device=dev)  # a running beam may still beat the finished ones
    offset = (torch.arange(b, device=dev) * k)[:, None]
    for t in range(max_new_tokens):
        logp = torch.log_softmax(head(last).float(), dim=-1)
        vocab = logp.shape[-1]
        total = (logp.view(b, k, vocab) + running_scores[..., None]).view(b, k * vocab)
        top_scores, top_idx = torch.topk(total, keep, dim=-1)
        parent, token = top_idx // vocab, top_idx % vocab
        cand = pick(running, parent)
        cand[:, :, t] = token
        ends = torch.isin(token, eos_t) | (t + 1 == max_new_tokens)
        # the K best continuations that do not end run on
        go_scores = top_scores + ends.float() * big
        nxt = torch.topk(go_scores, k, dim=-1).indices
        running, running_scores, beam_parent = pick(cand, nxt), pick(go_scores, nxt), pick(parent, nxt)
        # those among the K best that end are finished hypotheses, if they beat the finished ones
        just = ends & top_k_mask[None]
        scored = top_scores / float(t + 1) ** length_penalty
        blocked = ~open_rows | (finished.all(1, keepdim=True) & (early_stopping is True))
        scored = scored + blocked.float() * big + (~just).float() * big
        merged = torch.topk(torch.cat((done_scores, scored), 1), k, dim=-1).indices
        done_seqs = pick(torch.cat((done_seqs, cand), 1), merged)
        done_scores = pick(torch.cat((done_scores, scored), 1), merged)
        done_lens = pick(torch.cat((done_lens, torch.full_like(token, t + 1)), 1), merged)
        finished = pick(torch.cat((finished, just), 1), merged)
        best_len = max_new_tokens if early_stopping == "never" and length_penalty > 0 else t + 1
        best_running = running_scores[:, :1] / float(best_len) ** length_penalty
        worst_done = torch.where(finished, done_scores.min(1, keepdim=True).values, torch.full_like(done_scores, big))
        open_rows = open_rows & (best_running > worst_done).any(-1, keepdim=True)
        if not bool(open_rows.any()) or bool(ends.all()) or (early_stopping is True and bool(finished.all())):
            break
        cache.reorder_cache((beam_parent + offset).view(-1))
        mask = torch.cat((mask, mask.new_ones(b * k, 1)), 1)
        positions = torch.cat((positions, positions[:, -1:] + 1), 1)
        last = decoder(inputs_embeds=embed(running[:, :, t].reshape(-1))[:, None], attention_mask=mask[:, None, None, :].bool(),
                       position_ids=positions[:, -1:], **_cache(decoder, cache), use_cache=True).last_hidden_state[:, -1]
    best = done_seqs[:, 0]
    return best[:, :int(done_lens[:, 0].max())]
