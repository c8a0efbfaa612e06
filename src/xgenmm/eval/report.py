"""Writing results: JSON and a markdown table, atomically (temp file + os.replace)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _pm(value, se) -> str:
    """`value ± se` where there is a standard error, else the value."""
    return f"{_fmt(value)} ± {se:.4f}" if isinstance(se, float) else _fmt(value)


def _with_stderr(metrics: dict, key: str, value) -> str:
    return _pm(value, metrics.get(f"{key}_stderr"))


def markdown_table(results: list[dict]) -> str:
    """One row per (task, shots): the headline metric first (± its standard error), then the
    other scalar metrics."""
    lines = ["| task | shots | samples | skipped | metric | value | other metrics | samples/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        m = r["metrics"]
        main = r["main_metric"]
        others = ", ".join(f"{k} {_with_stderr(m, k, v)}" for k, v in m.items()
                           if k != main and not k.endswith("_stderr") and not isinstance(v, dict))
        shots = "-" if r["shots"] is None else f"0 (+{r['text_demos']} text)" if r.get("text_demos") else r["shots"]
        if (r.get("num_beams") or 1) > 1:
            shots = f"{shots}, {r['num_beams']} beams, lp {r['length_penalty']:g}"
        skipped = sum(r["skipped"].values()) if r["skipped"] else 0
        lines.append(f"| {r['task']} | {shots} | {r['scored']} | {skipped} | {main} | {_with_stderr(m, main, m.get(main, 0.0))} | "
                     f"{others or '-'} | {r['samples_per_s'] if r['samples_per_s'] is not None else '-'} |")
    for r in results:  # per-group breakdowns below the table
        for k, v in r["metrics"].items():
            if isinstance(v, dict) and not k.endswith("_stderr"):
                se = r["metrics"].get(f"{k}_stderr") or {}
                lines.append("")
                lines.append(f"**{r['task']}** {k.replace('_', ' ')}: " + ", ".join(
                    f"{g} {_pm(x, se.get(g))}" for g, x in v.items()))
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, results: list[dict]) -> None:
    write_json_atomic(Path(out_dir) / "results.json", results)
    write_text_atomic(Path(out_dir) / "results.md", markdown_table(results))
