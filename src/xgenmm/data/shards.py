"""WebDataset tar shards, streamed with the `webdataset` package's tar readers.

Members of one sample share a key (`abc.png`, `abc.txt`, `abc.json`). A caption sample is an
image member (jpg/jpeg/png/webp) with a `txt` member or a `json` member holding a caption; an
interleaved document (or a conversation) is a `json` member whose image segments name other
members of the same sample (`{"type": "image", "member": "0.png"}`) or carry base64 bytes.

Shards may be local paths, `pipe:` commands, or any URL fsspec opens. Order is deterministic
for a seed: the shard order (or, resampled, the shard draws) and the shuffle buffer use their
own seeded generators."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from pathlib import Path

from .errors import BAD_JSON, BAD_RECORD, MISSING_IMAGE, SampleError
from .samples import ImageRef
from .sources import RawItem, Source, SourceConfig

log = logging.getLogger("xgenmm.data")
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def is_shard_spec(path) -> bool:
    if isinstance(path, (list, tuple)):
        return True
    p = str(path)
    return ".tar" in p or p.endswith(".txt") or p.startswith("pipe:")


def expand_shards(path) -> list[str]:
    """Brace patterns (`data-{000..099}.tar`), lists of them, or a .txt file listing them."""
    import braceexpand

    specs = list(path) if isinstance(path, (list, tuple)) else [str(path)]
    out: list[str] = []
    for spec in specs:
        if spec.endswith(".txt") and Path(spec).exists():
            out += expand_shards([ln.strip() for ln in Path(spec).read_text().splitlines() if ln.strip()])
        else:
            out += list(braceexpand.braceexpand(spec))
    if not out:
        raise ValueError(f"{path}: no shards")
    return out


def _open(url: str):
    if url.startswith("pipe:"):
        from webdataset.gopen import gopen

        return gopen(url)
    if "://" in url and not url.startswith("file://"):
        import fsspec

        return fsspec.open(url, "rb").open()
    path = url.removeprefix("file://")
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: shard not found")
    return open(path, "rb")


class ShardSource(Source):
    def __init__(self, cfg: SourceConfig):
        super().__init__(cfg)
        self.urls = expand_shards(cfg.path)
        # Local shards are checked up front: a mistyped path is an error, not an empty stream.
        local = [u.removeprefix("file://") for u in self.urls if u.startswith("file://") or ("://" not in u and not u.startswith("pipe:"))]
        missing = [u for u in local if not Path(u).exists()]
        if missing:
            raise FileNotFoundError(f"{cfg.path}: {len(missing)} of {len(self.urls)} shards not found, e.g. {missing[0]}")
        self.name = Path(self.urls[0]).name if len(self.urls) == 1 else f"{Path(self.urls[0]).name}+{len(self.urls) - 1}"

    def shard_order(self, rng: random.Random) -> Iterator[str]:
        if self.cfg.resample:
            while True:
                yield rng.choice(self.urls)
        urls = list(self.urls)
        if self.cfg.shuffle:
            rng.shuffle(urls)
        yield from urls

    def samples(self, seed: int) -> Iterator[dict]:
        from webdataset.tariterators import group_by_keys, tar_file_expander

        def opened():
            for url in self.shard_order(random.Random(seed)):
                try:
                    yield {"url": url, "stream": _open(url)}
                except (OSError, ValueError) as e:
                    log.warning("cannot open shard %s: %s", url, e)

        def on_error(exn: Exception) -> bool:
            log.warning("shard read error, skipping the rest of the shard: %s", exn)
            return True

        yield from group_by_keys(tar_file_expander(opened(), handler=on_error), handler=on_error)

    def iterate(self, seed: int) -> Iterator[RawItem]:
        buf_size = self.cfg.shuffle_buffer if self.cfg.shuffle else 0
        rng = random.Random(seed + 1)
        buf: list[dict] = []
        for s in self.samples(seed):
            if buf_size <= 1:
                yield self._item(s)
                continue
            buf.append(s)
            if len(buf) >= buf_size:
                j = rng.randrange(len(buf))
                buf[j], buf[-1] = buf[-1], buf[j]
                yield self._item(buf.pop())
        rng.shuffle(buf)
        for s in buf:
            yield self._item(s)

    def _item(self, s: dict) -> RawItem:
        sid = f"{Path(str(s.get('__url__', '?'))).name}:{s.get('__key__', '?')}"
        uid = f"{s.get('__url__', '?')}:{s.get('__key__', '?')}"
        return RawItem(sid, _ShardRecord(s, sid, self.cfg), _member_resolver(s), uid=uid)


class _ShardRecord(dict):
    """Marker type: a shard sample turned into a record when parsed (see `shard_record`)."""

    def __init__(self, s: dict, sid: str, cfg: SourceConfig):
        super().__init__(__sample__=s, __id__=sid, __cfg__=cfg)


def shard_record(raw: _ShardRecord) -> dict:
    """The record of a shard sample: the `json` member (plus image/caption members), or an
    image + caption made from `txt`."""
    s, sid, cfg = raw["__sample__"], raw["__id__"], raw["__cfg__"]
    rec: dict = {}
    if "json" in s:
        try:
            rec = json.loads(s["json"])
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SampleError(BAD_JSON, sid, f"json member: {e}") from e
        if not isinstance(rec, dict):
            raise SampleError(BAD_JSON, sid, "json member is not an object")
    if cfg.text_field and cfg.text_field in rec:
        rec["caption"] = rec[cfg.text_field]
    image_member = next((e for e in IMAGE_EXTS if e in s), None)
    structured = any(k in rec for k in ("segments", "conversations", "messages", "chosen", "texts"))
    if not structured:
        if "txt" in s and not any(k in rec for k in ("caption", "text")):
            rec["caption"] = s["txt"].decode("utf-8", errors="replace")
        if image_member is None:
            raise SampleError(MISSING_IMAGE, sid, "caption sample without an image member")
        rec["image"] = ImageRef(data=s[image_member], name=f"{sid}.{image_member}")
        if not any(k in rec for k in ("caption", "text", "txt")):
            raise SampleError(BAD_RECORD, sid, "caption sample without txt member or caption field")
    return rec


def _member_resolver(s: dict):
    def resolve(value, sample_id: str) -> ImageRef:
        if isinstance(value, ImageRef):
            return value
        name = str(value)
        # Members are keyed by extension after the sample key: `abc.0.png` -> "0.png".
        if name in s:
            return ImageRef(data=s[name], name=name)
        raise SampleError(MISSING_IMAGE, sample_id, f"member {name!r} not in the shard sample")

    return resolve
