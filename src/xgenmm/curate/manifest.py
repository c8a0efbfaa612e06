"""The done-manifest of a curation run and its summary.

The manifest is an append-only JSON-lines file written by the coordinating process alone,
one line per shard whose outputs are already in place. A line cut short by a crash is
ignored on reading (that shard simply runs again)."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

SAMPLE_COUNTERS = ("read", "written")  # every other counter is a skip reason or a note
NOTE_PREFIX = "note_"  # counters of samples kept by policy (e.g. no alt-text), not skipped


class Manifest:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def done(self) -> dict[str, dict]:
        """Finished shards: name -> its result record (the last one, if a shard was redone)."""
        out: dict[str, dict] = {}
        if not self.path.exists():
            return out
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and "shard" in rec:
                out[rec["shard"]] = rec
        return out

    def add(self, result: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(result, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


def summarize(task: str, shards: list[str], done: dict[str, dict], failed: dict[str, str], already_done: int) -> dict:
    """Counts over every shard of this run that is done (this time or before)."""
    counts: Counter = Counter()
    engine_s = total_s = 0.0
    for name in shards:
        rec = done.get(name)
        if rec is None:
            continue
        counts.update(rec.get("counts", {}))
        engine_s += rec.get("engine_s", 0.0)
        total_s += rec.get("total_s", 0.0)
    skipped = {k: v for k, v in sorted(counts.items()) if k not in SAMPLE_COUNTERS and not k.startswith(NOTE_PREFIX)}
    notes = {k[len(NOTE_PREFIX):]: v for k, v in sorted(counts.items()) if k.startswith(NOTE_PREFIX)}
    return {
        "task": task,
        "shards": {"total": len(shards), "done": sum(n in done for n in shards), "skipped_as_done": already_done,
                   "failed": failed},
        "samples": {"read": counts["read"], "written": counts["written"], "skipped": sum(skipped.values())},
        "skipped": skipped,
        "kept_by_policy": notes,
        "engine_s": round(engine_s, 3),
        "total_s": round(total_s, 3),
        "engine_share": round(engine_s / total_s, 4) if total_s > 0 else None,
    }


def write_json_atomic(path: str | Path, value) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
