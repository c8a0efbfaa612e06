"""Where curation reads images from, split into shards (the unit of work, of resume and of
output): WebDataset tar shards (one shard per tar), Parquet files with image bytes (one shard
per file) and image folders with optional `.txt` alt-text and `.json` metadata sidecars
(sorted, cut into shards of `images_per_shard`). A `ShardSpec` is plain data, so that it can be
sent to a worker process or a Ray task; `read_shard` yields one `Record` per sample.

Images stay encoded here: decoding happens in the pipeline, where a failure is counted."""

from __future__ import annotations

import glob
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
WDS_IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff")
PARQUET_IMAGE_COLUMNS = ("image", "jpg", "png", "image_bytes", "bytes", "img")
PARQUET_TEXT_COLUMNS = ("caption", "alt_text", "text", "txt", "TEXT")


@dataclass(frozen=True)
class ShardSpec:
    """One unit of work: a name unique in the run (it names the outputs) and what to read."""

    name: str  # output stem, e.g. "00012" for 00012.tar; unique within one run
    kind: str  # "wds" | "parquet" | "folder"
    paths: tuple[str, ...]  # the tar / parquet file, or the folder shard's image files
    root: str = ""  # folder shards: the folder, for keys relative to it


@dataclass
class Record:
    """One sample as read, image still encoded."""

    key: str  # unique within its shard; the WebDataset `__key__` of the output
    image: bytes | None  # encoded image bytes (None: missing in the source)
    alt_text: str | None = None  # the web caption, if the source has one
    uid: str = ""  # the sample's id in the released schema (defaults to key)
    url: str = ""  # where the image came from, if known
    meta: dict = field(default_factory=dict)  # any other per-sample metadata (json sidecar / member)


@dataclass(frozen=True)
class SourceOptions:
    """How to read a source."""

    images_per_shard: int = 1000  # image folders: images per shard
    image_column: str | None = None  # Parquet: column of image bytes (None: first of PARQUET_IMAGE_COLUMNS present)
    text_column: str | None = None  # Parquet: column of alt-text (None: first of PARQUET_TEXT_COLUMNS present)


def _expand(pattern: str) -> list[str]:
    from braceexpand import braceexpand

    out: list[str] = []
    for p in braceexpand(pattern):
        hits = sorted(glob.glob(p)) if any(c in p for c in "*?[") else [p]
        out.extend(hits)
    return out


def _shard_name(path: Path, base: Path | None) -> str:
    rel = path.relative_to(base) if base is not None else Path(path.name)
    stem = str(rel.with_suffix("")) if rel.suffix else str(rel)
    return stem.replace(os.sep, "__")


def list_shards(sources: list[str] | str, options: SourceOptions = SourceOptions()) -> list[ShardSpec]:
    """Shards of one or more SOURCEs: a directory (of tars, of Parquet files, or of images),
    a file, or a glob / brace pattern of files. Raises FileNotFoundError naming a missing
    source and ValueError when shard names collide."""
    if isinstance(sources, str):
        sources = [sources]
    shards: list[ShardSpec] = []
    for source in sources:
        paths = _expand(source)
        if not paths or not all(os.path.exists(p) for p in paths):
            raise FileNotFoundError(f"curation input not found: {source}")
        for p in map(Path, paths):
            shards.extend(_shards_of(p, options))
    names = [s.name for s in shards]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"curation inputs give duplicate shard names {sorted(dup)[:5]}: pass distinct files")
    return shards


def _shards_of(path: Path, options: SourceOptions) -> list[ShardSpec]:
    if path.is_file():
        kind = _kind_of_file(path)
        if kind is None:
            raise ValueError(f"{path}: not a .tar WebDataset shard, a .parquet file or a folder of images")
        return [ShardSpec(_shard_name(path, None), kind, (str(path),))]
    files = sorted(p for p in path.rglob("*") if p.is_file())
    tars = [p for p in files if p.suffix == ".tar"]
    parquets = [p for p in files if p.suffix == ".parquet"]
    if tars or parquets:
        return [ShardSpec(_shard_name(p, path), _kind_of_file(p), (str(p),)) for p in tars + parquets]
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTS]
    if not images:
        raise ValueError(f"{path}: no .tar, .parquet or image files in this folder")
    n = max(1, options.images_per_shard)
    return [
        ShardSpec(f"{path.name}-{i // n:05d}", "folder", tuple(str(p) for p in images[i : i + n]), str(path))
        for i in range(0, len(images), n)
    ]


def _kind_of_file(path: Path) -> str | None:
    return {".tar": "wds", ".parquet": "parquet"}.get(path.suffix)


def count_records(shard: ShardSpec) -> int | None:
    """Number of samples in a shard when cheap to know (for progress bars), else None."""
    if shard.kind == "folder":
        return len(shard.paths)
    if shard.kind == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(shard.paths[0]).metadata.num_rows
    return None


def read_shard(shard: ShardSpec, options: SourceOptions = SourceOptions()) -> Iterator[Record]:
    reader = {"wds": _read_wds, "parquet": _read_parquet, "folder": _read_folder}[shard.kind]
    yield from reader(shard, options)


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    value = str(value).strip()
    return value or None


def _read_wds(shard: ShardSpec, options: SourceOptions) -> Iterator[Record]:
    import webdataset as wds

    for sample in wds.WebDataset(shard.paths[0], shardshuffle=False, empty_check=False):
        key = sample["__key__"]
        meta: dict = {}
        if "json" in sample:
            try:
                meta = json.loads(sample["json"])
            except (ValueError, UnicodeDecodeError):
                meta = {"_bad_json": True}
        image = next((sample[k] for k in WDS_IMAGE_KEYS if k in sample), None)
        alt = _text(sample.get("txt")) or _text(meta.get("caption") if isinstance(meta, dict) else None)
        yield Record(key, image, alt, str(meta.get("uid", key)), str(meta.get("url", "")), meta)


def _read_parquet(shard: ShardSpec, options: SourceOptions) -> Iterator[Record]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(shard.paths[0])
    names = pf.schema_arrow.names
    image_col = options.image_column or next((c for c in PARQUET_IMAGE_COLUMNS if c in names), None)
    if image_col is None or image_col not in names:
        raise ValueError(f"{shard.paths[0]}: no image column (looked for {options.image_column or PARQUET_IMAGE_COLUMNS}; has {names})")
    text_col = options.text_column or next((c for c in PARQUET_TEXT_COLUMNS if c in names), None)
    row = 0
    for batch in pf.iter_batches(batch_size=256):
        for item in batch.to_pylist():
            image = item.pop(image_col)
            if isinstance(image, dict):  # Hugging Face `Image` feature: {bytes, path}
                image = image.get("bytes")
            alt = _text(item.pop(text_col, None)) if text_col else None
            key = str(item.get("key") or item.get("uid") or f"{row:08d}")
            meta = {k: v for k, v in item.items() if _json_safe(v)}
            yield Record(key, image, alt, str(item.get("uid") or key), str(item.get("url") or ""), meta)
            row += 1


def _json_safe(value) -> bool:
    return isinstance(value, (str, int, float, bool, type(None), list, dict))


def _read_folder(shard: ShardSpec, options: SourceOptions) -> Iterator[Record]:
    root = Path(shard.root)
    for p in map(Path, shard.paths):
        key = str(p.relative_to(root).with_suffix("")).replace(os.sep, "__") if shard.root else p.stem
        txt, meta_path = p.with_suffix(".txt"), p.with_suffix(".json")
        alt = _text(txt.read_text(encoding="utf-8", errors="replace")) if txt.exists() else None
        meta: dict = {}
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except ValueError:
                meta = {"_bad_json": True}
        try:
            image = p.read_bytes()
        except OSError:
            image = None
        yield Record(key, image, alt, str(meta.get("uid", key)), str(meta.get("url", "")), meta)


def image_bytes_format(data: bytes) -> str | None:
    """"jpg" / "png" when the bytes are already in a format a WebDataset caption shard carries
    directly, else None (the writer re-encodes as PNG)."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return None


def encode_png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
