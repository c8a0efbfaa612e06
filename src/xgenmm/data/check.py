"""`data check`: scan a source or a mixture the way training reads it (same parsing, same
policies, same encoder with image tokens counted) and report what training would see."""

from __future__ import annotations

from collections import Counter

from .collate import pack_rows
from .encode import EncodeConfig
from .errors import SkipStats
from .loader import DataPipeline
from .mixture import Stream
from .parse import SamplePolicy


class _Len:
    """Just what packing looks at."""

    __slots__ = ("length", "num_images")

    def __init__(self, length: int, num_images: int):
        self.length, self.num_images = length, num_images


def length_bins(max_length: int) -> list[int]:
    edges, e = [], 64
    while e < max_length:
        edges.append(e)
        e *= 2
    return edges + [max_length]


def histogram(values: list[int], edges: list[int]) -> dict[str, int]:
    """Counts per bin `<=edge`, plus `>last` (labels are strings so that JSON keeps order)."""
    out = {f"<={e}": 0 for e in edges}
    out[f">{edges[-1]}"] = 0
    for v in values:
        key = next((f"<={e}" for e in edges if v <= e), f">{edges[-1]}")
        out[key] += 1
    return out


def padding_fractions(lengths: list[int], images: list[int], max_length: int, batch_size: int,
                      max_images_per_row: int = 0, window: int = 64) -> dict:
    """Padding fraction of right-padded batches (in stream order) and of packed rows, in
    positions (image tokens included), and how many samples share a row when packed."""
    real = sum(lengths)
    padded = 0
    for i in range(0, len(lengths), batch_size):
        chunk = lengths[i:i + batch_size]
        padded += max(chunk) * len(chunk)
    buf = [_Len(n, k) for n, k in zip(lengths, images)]
    rows, shared = [], 0
    pending: list = []
    while buf or pending:
        # The loader packs from a window of the stream; refill it the same way.
        while buf and len(pending) < window:
            pending.append(buf.pop(0))
        got = pack_rows(pending, 1, max_length, max_images_per_row)
        rows += got
        shared += sum(len(r) for r in got if len(r) > 1)
    packed = 0
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        packed += max(sum(s.length for s in r) for r in chunk) * len(chunk)
    return {
        "padding_fraction_padded": round(1 - real / padded, 4) if padded else 0.0,
        "padding_fraction_packed": round(1 - real / packed, 4) if packed else 0.0,
        "rows_padded": len(lengths),
        "rows_packed": len(rows),
        "samples_sharing_a_row": shared,
    }


def check(spec, processor, encode: EncodeConfig | None = None, policy: SamplePolicy | None = None,
          batch_size: int = 8, max_images_per_row: int = 0, limit: int | None = None, seed: int = 42,
          progress: bool = True) -> dict:
    """Scan one epoch (or `limit` raw records) of `spec` and return the report dict."""
    from tqdm import tqdm

    encode = encode or EncodeConfig()
    policy = policy or SamplePolicy()
    stream = spec if isinstance(spec, Stream) else Stream(spec, seed=seed)
    pipe = DataPipeline(stream, processor, encode, None, policy)
    stats = SkipStats(strict=policy.strict)
    lengths, images, text_lengths = [], [], []
    truncated = 0
    bar = tqdm(desc="data check", unit=" samples", disable=not progress, total=limit)
    for enc in pipe.samples(stats=stats, decode_pixels=False, limit=limit):
        for e in (enc.chosen, enc.rejected) if hasattr(enc, "chosen") else (enc,):
            lengths.append(e.length)
            text_lengths.append(len(e.input_ids))
        images.append(len(enc.chosen.image_sizes) if hasattr(enc, "chosen") else len(enc.image_sizes))
        truncated += int(enc.truncated)
        bar.update(stats.read - bar.n)
    bar.update(stats.read - bar.n)
    bar.close()
    # A preference pair is two sequences with the same images.
    seq_images = images if len(images) == len(lengths) else [k for k in images for _ in (0, 1)]
    report = {
        "samples": stats.read,
        "ok": stats.ok,
        "skipped": dict(sorted(stats.skipped.items())),
        "repaired": dict(sorted(stats.repaired.items())),
        "max_length": encode.max_length,
        "truncated": truncated,
        "token_lengths": histogram(lengths, length_bins(encode.max_length)),
        "text_token_lengths": histogram(text_lengths, length_bins(encode.max_length)),
        "images_per_sample": {str(k): v for k, v in sorted(Counter(images).items())},
        "mean_length": round(sum(lengths) / len(lengths), 1) if lengths else 0.0,
        "packing": padding_fractions(lengths, seq_images, encode.max_length, batch_size, max_images_per_row),
    }
    return report


def format_report(r: dict) -> str:
    lines = [f"samples read {r['samples']}, usable {r['ok']}, skipped {sum(r['skipped'].values())}"]
    for k, v in r["skipped"].items():
        lines.append(f"  skipped {k:<28} {v}")
    for k, v in r["repaired"].items():
        lines.append(f"  repaired {k:<27} {v}")
    lines.append(f"truncated to max_length {r['max_length']}: {r['truncated']} samples (never inside an image)")

    def hist(title: str, h: dict) -> None:
        lines.append(title)
        top = max(h.values()) if h and max(h.values()) else 1
        for k, v in h.items():
            lines.append(f"  {k:>8} {v:>8} {'#' * round(30 * v / top)}")

    hist("token lengths (image tokens included):", r["token_lengths"])
    hist("images per sample:", r["images_per_sample"])
    p = r["packing"]
    lines.append(f"padding: {p['padding_fraction_padded']:.1%} padded batches, {p['padding_fraction_packed']:.1%} packed "
                 f"({p['rows_packed']} packed rows for {p['rows_padded']} sequences; "
                 f"{p['samples_sharing_a_row']} samples would share a row)")
    return "\n".join(lines)
