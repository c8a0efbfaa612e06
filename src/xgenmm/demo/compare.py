"""Finished demo runs side by side (`xgenmm demo --compare RUN [RUN ...]`): one column per run
(seeds, hosts, variants of the recipe), one row per target with what it measured, its
verdict (with its margin in standard errors where the run recorded them) and how many of the
runs met it; then the headline scores with their mean and
standard deviation over the runs. Read from each run's `targets.json` and `scorecard.json`,
so runs finished elsewhere can be compared here."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from ..synth.language import QUESTION_KINDS
from . import targets as T

# (stage, scorecard key, label) of the second table: what the targets are decided on, and the
# question kinds behind them.
HEADLINES = (
    ("pretrain", "world_caption_0shot", "base model: captioning CIDEr, 0-shot"),
    ("pretrain", "world_caption_4shot", "base model: captioning CIDEr, 4-shot"),
    ("pretrain", "world_vqa_0shot", "base model: VQA, 0-shot"),
    ("pretrain", "world_vqa_4shot", "base model: VQA, 4-shot"),
    ("sft_single", "world_vqa", "single-image SFT: world VQA"),
    *(("sft_single", f"world_vqa/{k}", f"single-image SFT: {k}") for k in sorted(QUESTION_KINDS)),
    ("sft_single", "world_pope/accuracy", "single-image SFT: POPE accuracy"),
    ("sft_multi", "world_multi", "multi-image SFT: multi-image questions"),
    ("sft_multi", "world_vqa", "multi-image SFT: world VQA"),
    ("sft_multi", "preference_accuracy", "before DPO: preference accuracy"),
    ("dpo", "preference_accuracy", "DPO: preference accuracy"),
    ("sft_multi", "world_pope/hallucination_rate", "before DPO: POPE hallucination rate"),
    ("dpo", "world_pope/hallucination_rate", "DPO: POPE hallucination rate"),
    ("safety", "world_safety/refusal_rate_unsafe", "safety: unsafe requests refused"),
    ("safety", "world_safety/safe_answer_accuracy", "safety: ordinary requests answered right"),
)


def load_run(run: str | Path) -> dict:
    """{"name", "targets" (targets.json), "scorecard" (scorecard.json)} of a finished run;
    a clear error naming the file when the run is not one."""
    run = Path(run)
    out = {"name": run.name or str(run)}
    for key, name in (("targets", "targets.json"), ("scorecard", "scorecard.json")):
        path = run / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; --compare takes the folders of finished `xgenmm demo` runs")
        try:
            out[key] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
    for field in ("seed", "preset", "world", "scope", "met", "checked", "targets"):
        if field not in out["targets"]:
            raise ValueError(f"{run / 'targets.json'}: no field {field!r}")
    for i, t in enumerate(out["targets"]["targets"]):
        missing = [f for f in ("key", "target", "measured", "met") if f not in t]
        if missing:
            raise ValueError(f"{run / 'targets.json'}: target {i} has no field {missing[0]!r}")
    if not isinstance(out["scorecard"].get("stages"), dict):
        raise ValueError(f"{run / 'scorecard.json'}: no 'stages' table")
    out["path"] = str(run)
    return out


def _score(run: dict, stage: str, key: str) -> float | None:
    return run["scorecard"]["stages"].get(stage, {}).get(key)


def _verdict(t: dict) -> str:
    """The measure and the verdict, and how many standard errors the margin is where the run
    recorded them."""
    if t["met"] is None:
        return t["measured"]
    out = f"{t['measured']} {'yes' if t['met'] else 'no'}"
    if t.get("margin") is not None and t.get("stderr"):
        out += f" ({t['margin'] / t['stderr']:+.1f} SE)"
    return out


def compare_markdown(runs: list[dict]) -> str:
    """The two tables, as markdown: targets (one row per target as worded, each run's measure
    and verdict, how many of the runs that checked it met it), then headline scores (each
    run's, their mean and sample standard deviation)."""
    if not runs:
        raise ValueError("--compare: no runs given")
    names = [r["name"] for r in runs]
    heads = [f"{r['name'] if names.count(r['name']) == 1 else r['path']} (seed {r['targets']['seed']})" for r in runs]
    lines = ["Runs: " + "; ".join(f"{h}: preset {r['targets']['preset']}, world {r['targets']['world']}, "
                                  f"{r['targets']['scope']}, {r['targets']['met']} of {r['targets']['checked']} met"
                                  for h, r in zip(heads, runs)), ""]
    if len({(r["targets"]["preset"], r["targets"]["world"]) for r in runs}) > 1:
        lines += ["These runs differ in preset or world: the means and standard deviations below mix them.", ""]
    lines += ["| target | " + " | ".join(heads) + " | met in |", "|---|" + "---|" * len(runs) + "---|"]
    rows: list[str] = []  # a row per target as worded: a 3-minute and a 10-minute time budget are two rows
    for r in runs:
        rows += [t["target"] for t in r["targets"]["targets"] if t["target"] not in rows]
    for target in rows:
        cells = [next((t for t in r["targets"]["targets"] if t["target"] == target), None) for r in runs]
        decided = [c for c in cells if c is not None and c["met"] is not None]
        met = sum(c["met"] is True for c in decided)
        lines.append(f"| {target} | " + " | ".join("-" if c is None else _verdict(c) for c in cells)
                     + f" | {met} of {len(decided)} |")
    lines += ["", "| measure | " + " | ".join(heads) + " | mean | sd |",
              "|---|" + "---|" * len(runs) + "---|---|"]
    for stage, key, label in HEADLINES:
        values = [_score(r, stage, key) for r in runs]
        have = [v for v in values if v is not None]
        if not have:
            continue
        mean = f"{statistics.fmean(have):.3f}"
        sd = f"{statistics.stdev(have):.3f}" if len(have) > 1 else "-"
        lines.append(f"| {label} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in values)
                     + f" | {mean} | {sd} |")
    return "\n".join(lines) + "\n"


# Thresholds drawn on the plot: (stage, key) -> the target's threshold on that score.
THRESHOLDS = {("sft_single", "world_vqa"): T.VQA_OVERALL, ("sft_multi", "world_multi"): T.MULTI_IMAGE,
              ("safety", "world_safety/refusal_rate_unsafe"): T.REFUSED,
              **{("sft_single", f"world_vqa/{k}"): T.VQA_PER_KIND for k in QUESTION_KINDS}}


def compare_plot(runs: list[dict], path: Path) -> Path:
    """The headline scores as a dot plot, one colour per run, each target's threshold as a
    vertical tick: fractions on the left, the base model's captioning CIDEr on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .scorecard import save_figure

    panels = ([h for h in HEADLINES if "caption" not in h[1]], [h for h in HEADLINES if "caption" in h[1]])
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.32 * len(panels[0]) + 1.6),
                             gridspec_kw={"width_ratios": [3, 1.2]})
    for ax, rows in zip(axes, panels):
        labels = [label.replace("base model: captioning CIDEr, ", "") for _, _, label in rows]
        for i, r in enumerate(runs):
            ys, xs = [], []
            for y, (stage, key, _) in enumerate(rows):
                v = _score(r, stage, key)
                if v is not None:
                    ys.append(y + (i - (len(runs) - 1) / 2) * 0.08)
                    xs.append(v)
            ax.scatter(xs, ys, s=22, label=f"{r['name']} (seed {r['targets']['seed']})", zorder=3)
        for y, (stage, key, _) in enumerate(rows):
            if (stage, key) in THRESHOLDS:
                ax.plot([THRESHOLDS[(stage, key)]] * 2, [y - 0.35, y + 0.35], color="black", lw=1.4, zorder=2)
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_xlim(-0.02, 1.02)
    axes[0].set_xlabel("score (black tick: the target's threshold)")
    axes[1].set_xlabel("CIDEr")
    axes[1].set_title("base model: captioning CIDEr", fontsize=9)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return save_figure(fig, Path(path))
