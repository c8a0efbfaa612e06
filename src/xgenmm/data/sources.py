"""Where raw records come from: JSON / JSONL files with an image root, Parquet files with
image bytes, and (in shards.py) WebDataset tar shards. Every source yields `RawItem`s whose
record is parsed only when used, so skipping (on resume, or for another worker) is cheap."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import BAD_JSON, SampleError
from .parse import Resolver, default_resolver
from .samples import ImageRef


@dataclass
class SourceConfig:
    """One source of a mixture (or the whole input of `data check`)."""

    path: str | list = ""  # a file, a brace pattern of shards, a list of shards, or a .txt list of shards
    kind: str = "auto"  # auto, caption, interleaved, conversation or preference
    image_root: str = ""  # relative image paths are joined to this (JSON/JSONL/Parquet); default: the file's folder
    weight: float | None = None  # sampling weight in a weighted mixture
    samples: int | None = None  # sample count in a counted mixture (the release's SFT form)
    replacement: bool = False  # counted mixture: draw with replacement (else without, repeating passes)
    resample: bool = False  # stream forever, reshuffling per pass (shards: draw shards with replacement)
    shuffle: bool = True  # shuffle records (files: full permutation; shards: shard order + buffer)
    shuffle_buffer: int = 1000  # shards: size of the sample shuffle buffer (0: none)
    text_field: str = ""  # caption sources: the field holding the caption, when not caption/text/txt
    image_field: str = ""  # Parquet / JSON captions: the field holding the image, when not image/jpg/png


@dataclass
class RawItem:
    """One unparsed record and how to resolve its image references."""

    id: str  # source-qualified id used in logs (replaced by the record's own `id` when present)
    raw: object  # a dict, or a str/bytes JSON line parsed on `record()`
    resolve: Resolver = default_resolver  # image field -> ImageRef
    cfg: SourceConfig | None = None  # field renames applied after parsing a JSON line
    kind: str = "auto"  # the sample kind its source declares (auto: from the record's keys)
    source: int = 0  # index of its source in the stream's mixture
    uid: str = ""  # unique within its source where `id` may not be (shards: the full URL, not the file name)

    @property
    def key(self) -> tuple[int, str]:
        """What identifies the record in the whole stream (the encoded-sample cache's key)."""
        return self.source, self.uid or self.id

    def record(self) -> dict:
        from .shards import _ShardRecord, shard_record

        if isinstance(self.raw, _ShardRecord):
            return shard_record(self.raw)
        if isinstance(self.raw, (str, bytes)):
            try:
                rec = json.loads(self.raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise SampleError(BAD_JSON, self.id, str(e)) from e
            return _rename(rec, self.cfg) if self.cfg is not None and isinstance(rec, dict) else rec
        return self.raw


class Source:
    """Base class: `iterate(seed)` yields RawItems in a deterministic order for that seed."""

    name: str = "source"

    def __init__(self, cfg: SourceConfig):
        self.cfg = cfg

    def iterate(self, seed: int) -> Iterator[RawItem]:
        raise NotImplementedError

    @property
    def sized(self) -> bool:
        return hasattr(self, "__len__")


class IndexedSource(Source):
    """A source with random access: `len()` and `item(i)`."""

    def order(self, rng: random.Random) -> list[int]:
        idx = list(range(len(self)))
        if self.cfg.shuffle:
            rng.shuffle(idx)
        return idx

    def iterate(self, seed: int) -> Iterator[RawItem]:
        rng = random.Random(seed)
        while True:
            for i in self.order(rng):
                yield self.item(i)
            if not self.cfg.resample:
                return


def _root_resolver(root: Path) -> Resolver:
    def resolve(value, sample_id: str) -> ImageRef:
        ref = default_resolver(value, sample_id)
        if ref.path is not None and "://" not in ref.path and not os.path.isabs(ref.path):
            ref = ImageRef(path=str(root / ref.path), name=ref.name)
        return ref

    return resolve


def _rename(rec: dict, cfg: SourceConfig) -> dict:
    if cfg.text_field and cfg.text_field in rec:
        rec = {**rec, "caption": rec[cfg.text_field]}
    if cfg.image_field and cfg.image_field in rec:
        rec = {**rec, "image": rec[cfg.image_field]}
    return rec


class JsonSource(IndexedSource):
    """A JSON file holding a list of records (the LLaVA form)."""

    def __init__(self, cfg: SourceConfig):
        super().__init__(cfg)
        self.path = Path(cfg.path)
        self.name = self.path.name
        try:
            data = json.loads(self.path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{self.path}: not valid JSON ({e})") from e
        if not isinstance(data, list):
            raise ValueError(f"{self.path}: expected a JSON list of records, got {type(data).__name__}")
        self.records = data
        self.resolve = _root_resolver(Path(cfg.image_root) if cfg.image_root else self.path.parent)

    def __len__(self) -> int:
        return len(self.records)

    def item(self, i: int) -> RawItem:
        rec = self.records[i]
        rec = _rename(rec, self.cfg) if isinstance(rec, dict) else rec
        return RawItem(f"{self.name}:{i}", rec, self.resolve)


class JsonlSource(IndexedSource):
    """A JSON-lines file; only line offsets are held, lines are parsed when used so that a
    malformed line is one skipped sample, not a failed file."""

    def __init__(self, cfg: SourceConfig):
        super().__init__(cfg)
        self.path = Path(cfg.path)
        self.name = self.path.name
        self.offsets: list[int] = []  # byte offset of each non-blank line
        self.lines: list[int] = []  # its 1-based line number, to name it in errors
        with open(self.path, "rb") as f:
            pos = 0
            for n, line in enumerate(f, 1):
                if line.strip():
                    self.offsets.append(pos)
                    self.lines.append(n)
                pos += len(line)
        self.resolve = _root_resolver(Path(cfg.image_root) if cfg.image_root else self.path.parent)

    def __len__(self) -> int:
        return len(self.offsets)

    def item(self, i: int) -> RawItem:
        # One open per line read: no handle outlives the read (a held one stayed open until
        # the source was collected), and the source pickles to worker processes as it is.
        with open(self.path, "rb") as f:
            f.seek(self.offsets[i])
            line = f.readline()
        return RawItem(f"{self.name}:line {self.lines[i]}", line, self.resolve, self.cfg)


class ParquetSource(IndexedSource):
    """A Parquet file (the released BLIP3 sets): one record per row, images as bytes, as
    {bytes, path} structs, or as paths/URLs. Row groups are read on demand and cached, and
    the shuffled order visits one row group at a time so that the cache hits."""

    def __init__(self, cfg: SourceConfig):
        import pyarrow.parquet as pq

        super().__init__(cfg)
        self.path = Path(cfg.path)
        self.name = self.path.name
        meta = pq.ParquetFile(self.path).metadata
        self.group_sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        self.group_starts = [sum(self.group_sizes[:g]) for g in range(len(self.group_sizes))]
        self.resolve = _root_resolver(Path(cfg.image_root) if cfg.image_root else self.path.parent)
        self._cache: tuple[int, list[dict]] | None = None

    def __len__(self) -> int:
        return sum(self.group_sizes)

    def __getstate__(self):
        return {**self.__dict__, "_cache": None}

    def order(self, rng: random.Random) -> list[int]:
        groups = list(range(len(self.group_sizes)))
        if self.cfg.shuffle:
            rng.shuffle(groups)
        out = []
        for g in groups:
            rows = list(range(self.group_starts[g], self.group_starts[g] + self.group_sizes[g]))
            if self.cfg.shuffle:
                rng.shuffle(rows)
            out += rows
        return out

    def item(self, i: int) -> RawItem:
        import bisect

        import pyarrow.parquet as pq

        g = bisect.bisect_right(self.group_starts, i) - 1
        if self._cache is None or self._cache[0] != g:
            self._cache = (g, pq.ParquetFile(self.path).read_row_group(g).to_pylist())
        rec = _rename(self._cache[1][i - self.group_starts[g]], self.cfg)
        return RawItem(f"{self.name}:row {i}", rec, self.resolve)


def open_source(cfg: SourceConfig | str) -> Source:
    """The source for a path: .json, .jsonl, .parquet, or WebDataset shards (.tar, brace
    patterns, lists, a .txt shard list, any fsspec URL)."""
    from .shards import ShardSource, is_shard_spec

    cfg = cfg if isinstance(cfg, SourceConfig) else SourceConfig(path=cfg)
    path = cfg.path
    if is_shard_spec(path):
        return ShardSource(cfg)
    p = str(path)
    if not Path(p).exists():
        raise FileNotFoundError(f"{p}: no such data file")
    if p.endswith(".jsonl"):
        return JsonlSource(cfg)
    if p.endswith(".json"):
        return JsonSource(cfg)
    if p.endswith(".parquet"):
        return ParquetSource(cfg)
    raise ValueError(f"{p}: unknown data format (expected .json, .jsonl, .parquet, .tar shards or a mixture .yaml)")


__all__ = ["IndexedSource", "JsonSource", "JsonlSource", "ParquetSource", "RawItem", "Source", "SourceConfig",
           "open_source"]
