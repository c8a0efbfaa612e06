"""Mixtures of sources, from a YAML file, as one deterministic stream per (seed, epoch).

Two forms:

```yaml
# weighted: draw the next sample's source by weight (streams; shards welcome)
seed: 42
length: 100000            # optional: samples per epoch (default: until every source ends)
sources:
  - {path: "caps-{000..031}.tar", weight: 0.7, resample: true}
  - {path: docs.jsonl, weight: 0.3, image_root: images/}
```

```yaml
# counted (the released SFT form): each file contributes exactly N samples per epoch,
# drawn with or without replacement (passes over the file, then a random remainder)
seed: 42
replacement: false
image_folder: images/
data_path:
  llava_665k.json: 665298
  sharegpt4v.jsonl: 100000
```

Paths are relative to the YAML file's folder."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

from .sources import IndexedSource, RawItem, Source, SourceConfig, open_source


@dataclass
class MixtureConfig:
    sources: list[SourceConfig] = field(default_factory=list)  # the parts of the mixture
    seed: int = 42  # base seed; epoch e uses seed + e
    length: int | None = None  # weighted: samples per epoch (None: until all sources end)

    @property
    def counted(self) -> bool:
        return bool(self.sources) and all(s.samples is not None for s in self.sources)


def _source_cfg(d: dict, base: Path, defaults: dict) -> SourceConfig:
    known = {f.name for f in fields(SourceConfig)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"mixture source {d.get('path')!r}: unknown keys {sorted(unknown)}")
    d = {**defaults, **d}
    path = d["path"]
    rel = lambda p: p if "://" in p or p.startswith("pipe:") or Path(p).is_absolute() else str(base / p)  # noqa: E731
    d["path"] = [rel(p) for p in path] if isinstance(path, list) else rel(str(path))
    if d.get("image_root"):
        d["image_root"] = rel(str(d["image_root"]))
    return SourceConfig(**d)


def parse_mixture(data: dict, base: Path) -> MixtureConfig:
    if not isinstance(data, dict):
        raise ValueError("mixture: expected a mapping at the top of the YAML file")
    seed = int(data.get("seed", 42))
    defaults = {}
    if "image_folder" in data or "image_root" in data:
        defaults["image_root"] = data.get("image_folder", data.get("image_root"))
    if "replacement" in data:
        defaults["replacement"] = bool(data["replacement"])
    if "sources" in data:
        if not isinstance(data["sources"], list):
            raise ValueError("mixture: `sources` must be a list")
        sources = [_source_cfg(s if isinstance(s, dict) else {"path": s}, base, defaults) for s in data["sources"]]
    else:
        mapping = data.get("data_path", {k: v for k, v in data.items()
                                         if k not in ("seed", "image_folder", "image_root", "replacement", "length")})
        if not isinstance(mapping, dict) or not all(isinstance(v, int) for v in mapping.values()):
            raise ValueError("mixture: expected `sources: [...]` or a mapping file -> sample count")
        sources = [_source_cfg({"path": k, "samples": v}, base, defaults) for k, v in mapping.items()]
    if not sources:
        raise ValueError("mixture: no sources")
    counted = [s.samples is not None for s in sources]
    if any(counted) and not all(counted):
        raise ValueError("mixture: give every source a sample count, or none (weights)")
    cfg = MixtureConfig(sources, seed, data.get("length"))
    for s in sources:
        if s.weight is not None and s.weight < 0 or s.samples is not None and s.samples < 0:
            raise ValueError(f"mixture source {s.path}: negative weight or count")
    return cfg


def load_mixture(path: str | Path) -> MixtureConfig:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from e
    return parse_mixture(data, path.parent)


class Stream:
    """The raw record stream training reads: a source or a mixture, per epoch."""

    def __init__(self, spec: str | Path | SourceConfig | MixtureConfig, seed: int = 42):
        if isinstance(spec, (str, Path)) and str(spec).endswith((".yaml", ".yml")):
            spec = load_mixture(spec)
        if not isinstance(spec, MixtureConfig):
            spec = MixtureConfig([spec if isinstance(spec, SourceConfig) else SourceConfig(path=str(spec))], seed)
        self.cfg = spec
        self.sources: list[Source] = [open_source(s) for s in spec.sources]
        if spec.counted:
            for s in self.sources:
                if not isinstance(s, IndexedSource):
                    raise ValueError(f"{s.name}: sample counts need a JSON/JSONL/Parquet source; use weights for shards")

    def iterate(self, epoch: int = 0) -> Iterator[RawItem]:
        seed = self.cfg.seed + epoch
        if len(self.sources) == 1 and not self.cfg.counted:
            it = self._iterate_source(0, seed)
            yield from (it if self.cfg.length is None else _take(it, self.cfg.length))
        elif self.cfg.counted:
            yield from self._counted(seed)
        else:
            yield from self._weighted(seed)

    def _iterate_source(self, k: int, seed: int) -> Iterator[RawItem]:
        kind = self.cfg.sources[k].kind
        for item in self.sources[k].iterate(seed):
            item.kind, item.source = kind, k
            yield item

    def _counted(self, seed: int) -> Iterator[RawItem]:
        rng = random.Random(seed)
        plan: list[tuple[int, int]] = []
        for si, (src, cfg) in enumerate(zip(self.sources, self.cfg.sources)):
            n, c = len(src), cfg.samples
            if n == 0:
                continue
            if cfg.replacement:
                idx = [rng.randrange(n) for _ in range(c)]
            else:
                idx = []
                for _ in range(c // n):
                    idx += rng.sample(range(n), n)
                idx += rng.sample(range(n), c % n)
            plan += [(si, i) for i in idx]
        rng.shuffle(plan)
        for si, i in plan:
            item = self.sources[si].item(i)
            item.kind, item.source = self.cfg.sources[si].kind, si
            yield item

    def _weighted(self, seed: int) -> Iterator[RawItem]:
        rng = random.Random(seed)
        its = [self._iterate_source(k, seed + 1000 * (k + 1)) for k in range(len(self.sources))]
        weights = [1.0 if c.weight is None else float(c.weight) for c in self.cfg.sources]
        live = [k for k in range(len(its)) if weights[k] > 0]
        emitted = 0
        while live and (self.cfg.length is None or emitted < self.cfg.length):
            k = rng.choices(live, weights=[weights[j] for j in live])[0]
            try:
                item = next(its[k])
            except StopIteration:
                live.remove(k)
                continue
            emitted += 1
            yield item


def _take(it: Iterator, n: int) -> Iterator:
    for i, x in enumerate(it):
        if i >= n:
            return
        yield x
