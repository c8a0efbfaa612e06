"""Batches for training: right-padded rows, packed rows with per-sample segments, and DPO
pairs kept together; plus the `Batcher` that groups a stream of encoded samples into
batches (optionally by modality and length, or packing several samples per row).

Every batch: input_ids / attention_mask / labels [B, L]; pixel_values (one tensor per image,
row by row in tag order) and image_sizes; `sample_ids` per row. Packed batches add
segment_ids [B, L] (0 = padding, k = k-th sample of the row). DPO batches alternate rows:
chosen_0, rejected_0, chosen_1, ... with `num_pairs`."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import torch

from .encode import IGNORE_INDEX, Encoded, EncodedPair


@dataclass
class BatchConfig:
    batch_size: int = 8  # rows per batch
    packing: bool = False  # several samples per row up to max_length (not for DPO pairs)
    pack_window: int = 64  # samples looked at when filling packed rows (>= batch_size)
    max_images_per_row: int = 0  # per-row image budget when packing (0: no limit)
    group_by_modality: bool = False  # batches of text-only, single-image or multi-image samples only
    group_by_length: bool = False  # batches of samples of similar length (buckets below)
    length_buckets: list = field(default_factory=lambda: [128, 256, 512, 1024, 2048])  # bucket upper bounds
    drop_last: bool = False  # drop a final partial batch


def _rows_to_batch(rows: list[list[Encoded]], pad_id: int, packed: bool) -> dict:
    lengths = [sum(len(s.input_ids) for s in row) for row in rows]
    width = max(lengths)
    B = len(rows)
    input_ids = torch.full((B, width), pad_id, dtype=torch.long)
    labels = torch.full((B, width), IGNORE_INDEX, dtype=torch.long)
    segment_ids = torch.zeros((B, width), dtype=torch.long)
    pixel_values, image_sizes, sample_ids = [], [], []
    for b, row in enumerate(rows):
        pos = 0
        for k, s in enumerate(row, 1):
            n = len(s.input_ids)
            input_ids[b, pos:pos + n] = s.input_ids
            labels[b, pos:pos + n] = s.labels
            # The first token of a sample is never a target: unpacked, nothing precedes it;
            # packed, it would be predicted from the previous sample's last token.
            labels[b, pos] = IGNORE_INDEX
            segment_ids[b, pos:pos + n] = k
            pos += n
            pixel_values += s.pixel_values
            image_sizes += s.image_sizes
        sample_ids.append([s.id for s in row] if packed else row[0].id)
    batch = {
        "input_ids": input_ids,
        "attention_mask": (segment_ids > 0).long(),
        "labels": labels,
        "pixel_values": pixel_values,
        "image_sizes": image_sizes,
        "sample_ids": sample_ids,
    }
    if packed:
        batch["segment_ids"] = segment_ids
    return batch


def pad_batch(samples: list[Encoded], pad_id: int) -> dict:
    """Right-padded batch, one sample per row."""
    return _rows_to_batch([[s] for s in samples], pad_id, packed=False)


def pack_batch(rows: list[list[Encoded]], pad_id: int) -> dict:
    """Packed batch: each row holds the samples of one inner list, with segment_ids."""
    return _rows_to_batch(rows, pad_id, packed=True)


def pair_batch(pairs: list[EncodedPair], pad_id: int) -> dict:
    """DPO batch: rows chosen_0, rejected_0, chosen_1, ...; each pair shares its images, which
    appear once per row (as the tags do)."""
    rows = [s for p in pairs for s in (p.chosen, p.rejected)]
    batch = pad_batch(rows, pad_id)
    batch["num_pairs"] = len(pairs)
    return batch


def pack_rows(buffer: list, n_rows: int, max_length: int, max_images: int = 0) -> list[list]:
    """Best fit over `buffer` (taken samples are removed from it): each row starts with the
    oldest sample, then repeatedly takes the longest sample (the oldest among equals) that
    still fits the length and the image budget. Deterministic for a given ordered buffer."""
    rows = []
    while buffer and len(rows) < n_rows:
        row = [buffer.pop(0)]
        used, images = row[0].length, row[0].num_images
        while True:
            best = -1
            for i, s in enumerate(buffer):
                if used + s.length <= max_length and (not max_images or images + s.num_images <= max_images):
                    if best < 0 or s.length > buffer[best].length:
                        best = i
            if best < 0:
                break
            s = buffer.pop(best)
            row.append(s)
            used += s.length
            images += s.num_images
        rows.append(row)
    return rows


class Batcher:
    """Turns encoded samples, in stream order, into batches. Its decisions depend only on the
    ordered contents of its buffer, so replaying the samples it held reproduces its output
    exactly (that is what makes the loader resumable). `pending()` lists the stream positions
    of the samples it holds."""

    def __init__(self, cfg: BatchConfig, max_length: int, pad_id: int):
        self.cfg, self.max_length, self.pad_id = cfg, max_length, pad_id
        if cfg.packing and cfg.pack_window < cfg.batch_size:
            raise ValueError("pack_window must be >= batch_size")
        self.groups: dict[tuple, list] = {}

    def _key(self, s) -> tuple:
        key = ()
        if self.cfg.group_by_modality:
            key += (s.modality,)
        if self.cfg.group_by_length:
            key += (bisect.bisect_left(self.cfg.length_buckets, s.length),)
        return key

    def pending(self) -> list[int]:
        return sorted(s.position for g in self.groups.values() for s in g)

    def _make(self, items: list) -> dict:
        if isinstance(items[0], EncodedPair):
            return pair_batch(items, self.pad_id)
        return pad_batch(items, self.pad_id)

    def push(self, s) -> list[dict]:
        if self.cfg.packing:
            if isinstance(s, EncodedPair):
                raise ValueError("packing is not supported for preference pairs; use padded batches")
            buf = self.groups.setdefault((), [])
            buf.append(s)
            if len(buf) >= self.cfg.pack_window:
                return [self._pack(buf)]
            return []
        group = self.groups.setdefault(self._key(s), [])
        group.append(s)
        if len(group) >= self.cfg.batch_size:
            items = group[:self.cfg.batch_size]
            del group[:self.cfg.batch_size]
            return [self._make(items)]
        return []

    def _pack(self, buf: list) -> dict:
        rows = pack_rows(buf, self.cfg.batch_size, self.max_length, self.cfg.max_images_per_row)
        return pack_batch(rows, self.pad_id)

    def flush(self):
        """Yield the remaining batches one by one; `pending()` stays exact between yields."""
        for key in sorted(self.groups):
            buf = self.groups[key]
            while buf:
                if self.cfg.drop_last and len(buf) < self.cfg.batch_size:
                    buf.clear()
                    break
                if self.cfg.packing:
                    yield self._pack(buf)
                else:
                    items = buf[:self.cfg.batch_size]
                    del buf[:self.cfg.batch_size]
                    yield self._make(items)
        self.groups = {}
