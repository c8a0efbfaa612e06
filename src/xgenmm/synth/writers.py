"""Writing the world's files: every file atomically (a temporary name in the same folder,
then os.replace), every byte reproducible for a seed (tar members get a fixed mtime), and
every file recorded for the manifest."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import webdataset as wds
from PIL import Image

from .render import png_bytes

TAR_MTIME = 0.0  # fixed member mtime: same seed, same tar bytes


def to_json(obj) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=False) + "\n"


class OutputDir:
    """The output folder; remembers what it wrote (path, bytes, sha256)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.files: dict[str, dict] = {}

    def path(self, rel: str) -> Path:
        return self.root / rel

    def write_bytes(self, rel: str, data: bytes) -> Path:
        dest = self.root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, dest)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.files[rel] = {"path": rel, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        return dest

    def write_text(self, rel: str, text: str) -> Path:
        return self.write_bytes(rel, text.encode("utf-8"))

    def write_json(self, rel: str, obj) -> Path:
        return self.write_text(rel, to_json(obj))

    def write_jsonl(self, rel: str, rows: Iterable[dict]) -> Path:
        return self.write_text(rel, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    def save_image(self, rel: str, img: Image.Image) -> str:
        self.write_bytes(rel, png_bytes(img))
        return rel

    def write_shards(self, prefix: str, samples: Iterable[dict], per_shard: int) -> list[str]:
        """Write WebDataset samples ({"__key__", "png": bytes, "txt": str, "json": dict, ...})
        as `{prefix}-000000.tar`, ... with at most `per_shard` samples each."""
        names: list[str] = []
        buf: io.BytesIO | None = None
        writer: wds.TarWriter | None = None
        count = 0

        def flush() -> None:
            writer.close()
            rel = f"{prefix}-{len(names):06d}.tar"
            self.write_bytes(rel, buf.getvalue())
            names.append(rel)

        for sample in samples:
            if writer is None:
                buf = io.BytesIO()
                writer = wds.TarWriter(buf, mtime=TAR_MTIME)
            writer.write(sample)
            count += 1
            if count == per_shard:
                flush()
                writer, count = None, 0
        if writer is not None:
            flush()
        return names

    def listing(self) -> list[dict]:
        return [self.files[k] for k in sorted(self.files)]
