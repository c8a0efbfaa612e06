"""The training loader: a torch DataLoader over worker pipelines (read -> parse -> encode ->
batch), deterministic for a seed and resumable.

Determinism: the raw stream (source or mixture, epoch e seeded with seed + e) is the same in
every worker; logical worker w of W (on rank r of R) takes the positions p with
p % (W * R) == r * W + w and batches them itself; the DataLoader returns workers' batches
round-robin. Resuming: each batch carries its worker's position (the next stream position
and the positions still held in the batcher); `state_dict()` records, for the batches the
training loop has actually received, each worker's latest position and how many batches
were taken. A resumed loader replays the held samples, skips the rest without decoding them,
and rotates worker ids so that the round-robin continues with the right worker."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import IterableDataset, get_worker_info

from .collate import BatchConfig, Batcher
from .encode import EncodeConfig, Encoded, EncodedPair, Encoder
from .errors import SampleError, SkipStats
from .mixture import Stream
from .parse import SamplePolicy, parse_record

log = logging.getLogger("xgenmm.data")


@dataclass
class LoaderConfig:
    seed: int = 42  # stream seed (overrides the mixture's when given to `build_loader`)
    num_workers: int = 0  # DataLoader worker processes (0: in the main process)
    rank: int = 0  # this process's data-parallel rank
    world_size: int = 1  # data-parallel ranks; each reads a disjoint part of the stream
    prefetch_factor: int = 2  # batches prefetched per worker
    cache_mb: int = 0  # keep encoded samples in memory up to this many MiB (0: off; see EncodedCache)


@dataclass
class _Entry:
    """What encoding one record gave: the sample (or the SampleError that skips it) and the
    repairs made on the way."""

    value: object  # Encoded, EncodedPair or SampleError
    repaired: Counter


class EncodedCache:
    """Encoded samples (token ids, labels, image crops) kept in memory across epochs, keyed by
    the record's place in the stream (`RawItem.key`: its source, and its index, line or shard
    URL and member key there), so that a multi-epoch run decodes and encodes each sample once.
    Encoding is a pure function of the record, so a cached epoch yields exactly the batches an
    uncached one does; a sample that failed to encode is remembered as its error (and counted
    again each epoch, as it would be). When `max_bytes` is reached, further samples are
    encoded as usual and not kept. In-process only: worker processes would each hold their
    own copy and lose it at every epoch, so the trainer allows it with `num_workers: 0`."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.items: dict[tuple, object] = {}
        self.bytes = 0
        self.hits = self.misses = self.not_kept = 0
        # One crops tensor per image file, shared by every sample that shows it (the encoder's
        # pixel memo); counted in `bytes` once, when kept, and never again in a sample's size.
        self.pixels: dict[str, tuple[torch.Tensor, tuple[int, int]]] = {}
        self._pixel_ids: set[int] = set()

    def size(self, entry: "_Entry") -> int:
        value = entry.value
        encs = (value.chosen, value.rejected) if isinstance(value, EncodedPair) else (value,) if isinstance(value, Encoded) else ()
        seen, total = set(), 256
        for e in encs:
            for t in [e.input_ids, e.labels, *e.pixel_values]:
                if id(t) not in seen and id(t) not in self._pixel_ids:
                    seen.add(id(t))
                    total += t.numel() * t.element_size()
        return total

    def get_pixels(self, key: str) -> tuple[torch.Tensor, tuple[int, int]] | None:
        """The crops and (w, h) size kept for the image file `key`, or None."""
        return self.pixels.get(key)

    def keep_pixels(self, key: str, pixels: torch.Tensor, size: tuple[int, int]) -> None:
        """Keep an image's crops for the next sample that shows it, while the cache has room."""
        n = pixels.numel() * pixels.element_size()
        if key in self.pixels or self.bytes + n > self.max_bytes:
            return
        self.pixels[key] = (pixels, size)
        self._pixel_ids.add(id(pixels))
        self.bytes += n

    def get(self, key: tuple):
        value = self.items.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, key: tuple, value) -> None:
        n = self.size(value)
        if self.bytes + n > self.max_bytes:
            self.not_kept += 1
            return
        self.items[key] = value
        self.bytes += n

    def summary(self) -> str:
        full = f", {self.not_kept} not kept (the cache is full: raise data.cache_mb)" if self.not_kept else ""
        return (f"encoded-sample cache: {len(self.items)} samples, {self.bytes / 2**20:.1f} MiB of "
                f"{self.max_bytes / 2**20:.0f}, {self.hits} hits, {self.misses} misses{full}")


class DataPipeline:
    """stream + policy + encoder + batcher for one logical worker: `batches(...)`."""

    def __init__(self, stream: Stream, processor, encode: EncodeConfig | None = None,
                 batch: BatchConfig | None = None, policy: SamplePolicy | None = None, cache_mb: int = 0):
        self.stream = stream
        self.processor = processor
        self.encode_cfg = encode or EncodeConfig()
        self.batch_cfg = batch or BatchConfig()
        self.policy = policy or SamplePolicy()
        self.cache = EncodedCache(cache_mb * 2**20) if cache_mb > 0 else None

    def samples(self, epoch: int = 0, shard: int = 0, num_shards: int = 1, stats: SkipStats | None = None,
                decode_pixels: bool = True, state: dict | None = None, limit: int | None = None) -> Iterator:
        """Encoded samples of this shard in stream order (bad ones counted in `stats`), over
        the first `limit` stream positions when given."""
        stats = stats if stats is not None else SkipStats(strict=self.policy.strict)
        # Repairs are counted per sample, then added to `stats` when the sample is fresh (a
        # replayed one was counted before the save) and remembered with a cached sample.
        local = SkipStats()
        cache = self.cache if decode_pixels else None
        encoder = Encoder(self.processor, self.encode_cfg, local, decode_pixels=decode_pixels, pixel_memo=cache)
        cursor = state["cursor"] if state else 0
        replay = set(state["pending"]) if state else set()
        for pos, item in enumerate(self.stream.iterate(epoch)):
            if limit is not None and pos >= limit:
                return
            if pos % num_shards != shard or (pos < cursor and pos not in replay):
                continue
            fresh = pos >= cursor  # replayed samples were counted before the save
            if fresh:
                stats.read += 1
            key = item.key
            entry = cache.get(key) if cache is not None else None
            if entry is None:
                local.repaired.clear()
                try:
                    sample = parse_record(item.record(), item.id, item.resolve, self.policy, local, item.kind)
                    entry = _Entry(encoder.encode(sample), Counter(local.repaired))
                except SampleError as e:
                    # Kept without its traceback, whose frames would hold the sample's data.
                    entry = _Entry(e.with_traceback(None), Counter(local.repaired))
                if cache is not None:
                    cache.put(key, entry)
            if fresh:
                stats.repaired.update(entry.repaired)
            if isinstance(entry.value, SampleError):
                if fresh:
                    stats.skip(entry.value)
                continue
            enc = dataclasses.replace(entry.value, position=pos)
            if fresh:
                stats.ok += 1
            yield enc

    def batches(self, epoch: int = 0, shard: int = 0, num_shards: int = 1, state: dict | None = None) -> Iterator[dict]:
        stats = SkipStats.from_dict(state["stats"], strict=self.policy.strict) if state else SkipStats(strict=self.policy.strict)
        pad_id = self.processor.pad_token_id
        batcher = Batcher(self.batch_cfg, self.encode_cfg.max_length, pad_id)
        pos = state["cursor"] - 1 if state else -1

        def tag(batch: dict, cursor: int, done: bool) -> dict:
            batch["_state"] = {"cursor": cursor, "pending": batcher.pending(), "stats": stats.to_dict(), "done": done}
            return batch

        for enc in self.samples(epoch, shard, num_shards, stats, state=state):
            pos = enc.position
            for b in batcher.push(enc):
                yield tag(b, pos + 1, False)
        for b in batcher.flush():
            yield tag(b, 1 << 62, False)
        # A trailing state-only marker so the main process knows this worker's stats at the end.
        yield {"_state": {"cursor": 1 << 62, "pending": [], "stats": stats.to_dict(), "done": True}}


class _Workers(IterableDataset):
    def __init__(self, pipeline: DataPipeline, epoch: int, cfg: LoaderConfig, offset: int, states: dict):
        self.pipeline, self.epoch, self.cfg, self.offset, self.states = pipeline, epoch, cfg, offset, states

    def __iter__(self):
        info = get_worker_info()
        n = max(1, self.cfg.num_workers)
        logical = ((info.id if info else 0) + self.offset) % n
        shard = self.cfg.rank * n + logical
        state = self.states.get(logical)
        if state and state.get("done"):
            return
        if info is not None:  # in worker processes only: the training process keeps its threads
            torch.set_num_threads(1)  # workers decode and tokenise; leave the cores to each other
        for b in self.pipeline.batches(self.epoch, shard, n * self.cfg.world_size, state):
            b["_state"]["worker"] = logical
            yield b


class ResumableLoader:
    """Iterate for one epoch per `iter()`; `state_dict()` / `load_state_dict()` hold the
    position, so that a resumed run sees exactly the batches it would have seen."""

    def __init__(self, pipeline: DataPipeline, cfg: LoaderConfig | None = None):
        self.pipeline = pipeline
        self.cfg = cfg or LoaderConfig()
        self.epoch = 0
        self.taken = 0  # batches of this epoch handed to the caller
        self.next_worker = 0  # logical worker whose batch comes next (round-robin)
        self.workers: dict[int, dict] = {}  # logical worker -> its latest state
        self.last_epoch_stats: SkipStats | None = None  # counters of the last finished epoch

    def __iter__(self) -> Iterator[dict]:
        n = max(1, self.cfg.num_workers)
        ds = _Workers(self.pipeline, self.epoch, self.cfg, self.next_worker, dict(self.workers))
        kwargs = {}
        if self.cfg.num_workers > 0:
            kwargs = dict(num_workers=self.cfg.num_workers, prefetch_factor=self.cfg.prefetch_factor)
        for b in torch.utils.data.DataLoader(ds, batch_size=None, **kwargs):
            st = b.pop("_state")
            w = st.pop("worker")
            self.workers[w] = st
            # The DataLoader serves live workers round-robin; a resumed one must start here.
            self.next_worker = (w + 1) % n
            if not b:  # the end-of-stream marker
                continue
            self.taken += 1
            yield b
        self.last_epoch_stats = self.stats()
        log.info("data epoch %d: %s", self.epoch, self.last_epoch_stats.summary())
        if self.pipeline.cache is not None:
            log.info(self.pipeline.cache.summary())
        self.epoch += 1
        self.taken = 0
        self.next_worker = 0
        self.workers = {}

    def stats(self) -> SkipStats:
        """Counters so far this epoch, over all workers (read, ok, skipped per reason)."""
        total = SkipStats()
        for st in self.workers.values():
            total.merge(st["stats"])
        return total

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "taken": self.taken, "next_worker": self.next_worker, "num_workers": max(1, self.cfg.num_workers),
                "rank": self.cfg.rank, "world_size": self.cfg.world_size,
                "workers": {int(k): {**v, "pending": list(v["pending"])} for k, v in self.workers.items()}}

    def load_state_dict(self, state: dict) -> None:
        if state["num_workers"] != max(1, self.cfg.num_workers) or state.get("world_size", 1) != self.cfg.world_size:
            raise ValueError(
                f"loader state was saved with {state['num_workers']} workers x {state.get('world_size', 1)} ranks; "
                f"resume with the same (now {max(1, self.cfg.num_workers)} x {self.cfg.world_size})"
            )
        self.epoch, self.taken = int(state["epoch"]), int(state["taken"])
        self.next_worker = int(state["next_worker"])
        self.workers = {int(k): dict(v) for k, v in state["workers"].items()}


def build_loader(source, processor, encode: EncodeConfig | None = None, batch: BatchConfig | None = None,
                 policy: SamplePolicy | None = None, loader: LoaderConfig | None = None) -> ResumableLoader:
    """The loader for a source path, a mixture YAML, or a SourceConfig / MixtureConfig."""
    loader = loader or LoaderConfig()
    stream = source if isinstance(source, Stream) else Stream(source, seed=loader.seed)
    return ResumableLoader(DataPipeline(stream, processor, encode, batch, policy, cache_mb=loader.cache_mb), loader)
