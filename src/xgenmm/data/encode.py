"""Typed samples to model inputs: images decoded and cut into crops by the processor's image
processor, text rendered and tokenised by its tokenizer, labels built from the structure of
the text, and the length policy applied with image tokens counted.

Labels are right by construction: the chat is rendered by `render_chat`, which returns the
character spans of each part; the whole text is tokenised once (as generation tokenises a
prompt) and a token is supervised when its characters overlap a supervised span (an
assistant answer and its `<|end|>\\n`). Image tokens and padding are never supervised.

Conventions (reference section 4):
- instruct (conversations, preference pairs): one `<image>` id per image stays in input_ids;
  the model replaces it by `proc.tokens_per_image(size)` tokens, so a sample's length is
  len(input_ids) + sum(tokens_per_image - 1).
- base (captions, interleaved documents): `<image>` + (T - 1) `<image placeholder>` ids are
  written, T = `proc.tokens_per_image(size)`; length = len(input_ids)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..model.template import END_OF_CHUNK_TOKEN, IMAGE_TOKEN, render_chat
from .errors import IMAGE_COUNT, NO_LABELS, TOO_LONG, TRUNCATED, SampleError, SkipStats
from .samples import CaptionSample, Conversation, ImageRef, InterleavedSample, PreferenceSample, modality

IGNORE_INDEX = -100


@dataclass
class EncodeConfig:
    max_length: int = 2048  # tokens per sample, image tokens included (release: 2048)
    truncation: str = "truncate"  # truncate: cut before the first image/text that does not fit; drop: skip the sample
    convention: str = "auto"  # auto (instruct for chats, base for captions/documents), instruct or base
    add_eos: bool = True  # pretraining documents end with the tokenizer's eos (supervised)
    supervise_endofchunk: bool = True  # pretraining: learn to emit `<|endofchunk|>` (few-shot stop); chats never have it


@dataclass
class Encoded:
    """One sample as model inputs (before batching)."""

    id: str  # the sample's id
    input_ids: torch.Tensor  # [n] long
    labels: torch.Tensor  # [n] long, IGNORE_INDEX where not supervised
    pixel_values: list = field(default_factory=list)  # one [n_crops, 3, S, S] per image, in tag order
    image_sizes: list = field(default_factory=list)  # (w, h) per image
    image_tokens: list = field(default_factory=list)  # tokens the model produces per image
    length: int = 0  # positions after the model splices images in
    modality: str = "text"  # text, single or multi (for grouping)
    truncated: bool = False  # the length policy cut this sample
    position: int = -1  # index in the worker's raw stream (for resuming)

    @property
    def num_images(self) -> int:
        return len(self.pixel_values)


@dataclass
class EncodedPair:
    """A preference pair kept together: same prompt and images, two answers."""

    chosen: Encoded
    rejected: Encoded
    position: int = -1

    @property
    def id(self) -> str:
        return self.chosen.id

    @property
    def length(self) -> int:
        return max(self.chosen.length, self.rejected.length)

    @property
    def num_images(self) -> int:
        return 2 * self.chosen.num_images

    @property
    def modality(self) -> str:
        return self.chosen.modality

    @property
    def truncated(self) -> bool:
        return self.chosen.truncated or self.rejected.truncated


@dataclass
class _Image:
    """An image as the encoder holds it between reading its size and cutting its crops: decoded
    (`pil`), or its crops already cut for an earlier sample (`pixels`, from the pixel memo)."""

    key: str | None  # the memo's key (a path or URL; None for inline bytes)
    size: tuple[int, int]  # (w, h)
    pil: object = None
    pixels: torch.Tensor | None = None


class Encoder:
    """`encode(sample) -> Encoded | EncodedPair`; raises SampleError for samples the policy skips.

    `pixel_memo` (the pipeline's sample cache: `get_pixels` / `keep_pixels`) shares one crops
    tensor between the samples that show the same image file (a picture asked several questions
    is several samples): it is decoded and cut once, and the model's image-token cache, keyed by
    the tensor, runs the vision side for it once. An image's tokens do not depend on which
    images share its batch, so training is unchanged to the bit."""

    def __init__(self, processor, cfg: EncodeConfig | None = None, stats: SkipStats | None = None,
                 decode_pixels: bool = True, pixel_memo=None):
        self.proc = processor
        self.memo = pixel_memo if decode_pixels else None
        self.tok = processor.tokenizer
        self.cfg = cfg or EncodeConfig()
        self.stats = stats
        self.decode_pixels = decode_pixels  # False: sizes only (data check), no crops computed
        self.system_prompt = getattr(processor, "system_prompt", None)
        self.image_id = processor.image_token_id
        self.placeholder_id = processor.placeholder_token_id
        self.eoc_id = processor.endofchunk_token_id
        self.never_supervised = torch.tensor([self.image_id, self.placeholder_id, processor.pad_token_id])
        if self.cfg.truncation not in ("truncate", "drop"):
            raise ValueError(f"truncation must be truncate or drop, got {self.cfg.truncation!r}")

    # -- images ---------------------------------------------------------------------------
    def _images(self, refs: list[ImageRef], sid: str) -> tuple[list, list, list]:
        images = []
        for ref in refs:
            key = ref.path if self.memo is not None and ref.data is None and ref.path else None
            hit = self.memo.get_pixels(key) if key is not None else None
            if hit is not None:
                images.append(_Image(key, hit[1], pixels=hit[0]))
            else:
                pil = ref.load(sid)
                images.append(_Image(key, tuple(pil.size), pil=pil))
        sizes = [im.size for im in images]
        return images, sizes, [int(self.proc.tokens_per_image(s)) for s in sizes]

    def _pixels(self, images: list[_Image]) -> list:
        if not self.decode_pixels:
            return [None] * len(images)
        out = []
        for im in images:
            if im.pixels is None:
                im.pixels = self.proc.image_processor.preprocess_one(im.pil)
                if im.key is not None:
                    self.memo.keep_pixels(im.key, im.pixels, im.size)
            out.append(im.pixels)
        return out

    # -- entry point ------------------------------------------------------------------------
    def encode(self, sample):
        conv = self.cfg.convention
        if isinstance(sample, PreferenceSample):
            pils, sizes, ntok = self._images(sample.images, sample.id)
            # Only the final answer is supervised in each row: a multi-turn prompt's earlier
            # answers are prompt, scored by neither the DPO term nor the NLL term (as TRL's).
            pair = [self._chat(sample.conversation(a), sizes, ntok, conv != "base", final_answer_only=True)
                    for a in (sample.chosen, sample.rejected)]
            keep = min(p[2] for p in pair)
            pixels = self._pixels(pils[:keep])
            out = [self._finish(sample.id, ids, labels, pixels[:k], sizes[:k], ntok[:k], modality(sample), cut)
                   for ids, labels, k, cut in pair]
            return EncodedPair(out[0], out[1])
        if isinstance(sample, Conversation):
            pils, sizes, ntok = self._images(sample.images, sample.id)
            ids, labels, k, cut = self._chat(sample, sizes, ntok, conv != "base")
        elif isinstance(sample, (CaptionSample, InterleavedSample)):
            pils, sizes, ntok = self._images(sample.images, sample.id)
            ids, labels, k, cut = self._document(sample, ntok, conv == "instruct")
        else:
            raise TypeError(f"cannot encode a {type(sample).__name__}")
        return self._finish(sample.id, ids, labels, self._pixels(pils[:k]), sizes[:k], ntok[:k], modality(sample), cut)

    def _finish(self, sid, ids, labels, pixels, sizes, ntok, mod, cut) -> Encoded:
        ids_t = torch.tensor(ids, dtype=torch.long)
        lab_t = torch.tensor(labels, dtype=torch.long)
        lab_t[torch.isin(ids_t, self.never_supervised)] = IGNORE_INDEX
        if not (lab_t != IGNORE_INDEX).any():
            raise SampleError(NO_LABELS, sid, "truncated before any supervised token" if cut else "nothing supervised")
        if cut and self.stats is not None:
            self.stats.repair(TRUNCATED, sid)
        instruct = not bool((ids_t == self.placeholder_id).any())
        length = len(ids) + (sum(n - 1 for n in ntok) if instruct else 0)
        return Encoded(sid, ids_t, lab_t, pixels, sizes, ntok, length, mod, cut)

    # -- text -------------------------------------------------------------------------------
    def _chat(self, conv: Conversation, sizes, ntok, instruct: bool, final_answer_only: bool = False):
        text, spans = render_chat(conv.messages(), system_prompt=self.system_prompt)
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        sup = np.zeros(len(text) + 1, dtype=np.int64)
        supervised = [s for s in spans if s.supervised]
        for s in supervised[-1:] if final_answer_only else supervised:
            sup[s.start + 1:s.end + 1] = 1
        csum = np.cumsum(sup)  # csum[e] - csum[s] = supervised characters in [s, e)
        offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        on = (csum[offsets[:, 1]] - csum[offsets[:, 0]]) > 0
        labels = np.where(on, np.asarray(ids), IGNORE_INDEX).tolist()
        if not instruct:
            ids, labels = self._expand_base(ids, labels, ntok)
        return self._fit(ids, labels, ntok, conv.id)

    def _document(self, sample, ntok, instruct: bool):
        pieces: list[str] = []
        segments = [IMAGE_TOKEN, sample.text] if isinstance(sample, CaptionSample) else sample.segments
        seen_text = False
        for seg in segments:
            if isinstance(seg, str) and seg != IMAGE_TOKEN:
                pieces.append(seg)
                seen_text = seen_text or bool(seg.strip())
            else:
                # Each image opens a chunk; the chunk before it is closed (OpenFlamingo/BLIP-3 layout).
                pieces.append((END_OF_CHUNK_TOKEN if seen_text else "") + IMAGE_TOKEN)
        pieces.append(END_OF_CHUNK_TOKEN)
        text = "".join(pieces)
        ids = list(self.tok(text, add_special_tokens=False)["input_ids"])
        if self.cfg.add_eos and self.tok.eos_token_id is not None:
            ids.append(self.tok.eos_token_id)
        if ids.count(self.image_id) != len(ntok):
            raise SampleError(IMAGE_COUNT, sample.id, f"text segments contain <image> tags ({ids.count(self.image_id)} for {len(ntok)} images)")
        labels = list(ids)
        if not self.cfg.supervise_endofchunk:
            labels = [IGNORE_INDEX if t == self.eoc_id else t for t in labels]
        if not instruct:
            ids, labels = self._expand_base(ids, labels, ntok)
        return self._fit(ids, labels, ntok, sample.id)

    def _expand_base(self, ids, labels, ntok):
        out_ids, out_labels, k = [], [], 0
        for t, y in zip(ids, labels):
            if t == self.image_id:
                out_ids += [t] + [self.placeholder_id] * (ntok[k] - 1)
                out_labels += [IGNORE_INDEX] * ntok[k]
                k += 1
            else:
                out_ids.append(t)
                out_labels.append(y)
        return out_ids, out_labels

    # -- length policy ----------------------------------------------------------------------
    def _fit(self, ids, labels, ntok, sid):
        """Cut to max_length counting image tokens, never inside an image. Returns
        (ids, labels, images kept, truncated?)."""
        max_len = self.cfg.max_length
        ids_a = np.asarray(ids)
        is_tag = ids_a == self.image_id
        base = bool((ids_a == self.placeholder_id).any())
        weight = np.ones(len(ids_a), dtype=np.int64)
        if not base and is_tag.any():
            weight[is_tag] = np.asarray(ntok, dtype=np.int64)
        total = int(weight.sum())
        n_images = int(is_tag.sum())
        if total <= max_len:
            return ids, labels, n_images, False
        if self.cfg.truncation == "drop":
            raise SampleError(TOO_LONG, sid, f"{total} tokens > max_length {max_len}")
        # k = tokens kept: the longest prefix within budget...
        cum = np.cumsum(weight)
        k = int(np.searchsorted(cum, max_len, side="right"))
        # ... that does not end inside an image (base: its placeholder run; instruct: the
        # tag's own weight already keeps a partial image out of the prefix).
        tags = np.flatnonzero(is_tag)
        if base:
            for j, start in enumerate(tags):
                if start < k < start + ntok[j]:
                    k = int(start)
                    break
        kept = int((tags < k).sum())
        if k == 0:
            raise SampleError(TOO_LONG, sid, f"the first image alone needs more than max_length {max_len}")
        return ids[:k], labels[:k], kept, True
