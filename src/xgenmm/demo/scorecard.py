"""The demo's scorecard: `scorecard.json` ({"stages": {STAGE: {TASK: score}}, "chance": {TASK:
score}, "seconds": {STAGE: wall_seconds}}), `scorecard.md` (one row per stage, one column per
task, chance as the last row) and `loss_curves.png` (one panel per training stage)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..eval.report import write_text_atomic

# Column groups of the markdown scorecard: (title, key prefix or exact keys).
HEADLINE = ("world_vqa", "world_mc", "world_pope", "world_pope/hallucination_rate", "world_grounding", "world_multi",
            "preference_accuracy", "world_safety/refusal_rate_unsafe", "world_safety/safe_answer_accuracy",
            "world_caption_0shot", "world_caption_4shot", "world_vqa_0shot", "world_vqa_4shot",
            "vision/pair_accuracy", "vision/hard_negative_accuracy")
NOT_FRACTIONS = ("world_caption",)  # CIDEr is not a fraction


@dataclass
class Scorecard:
    stages: dict = field(default_factory=dict)  # stage -> {task: score}
    chance: dict = field(default_factory=dict)  # task -> chance score
    seconds: dict = field(default_factory=dict)  # stage -> wall seconds (training + evaluation)

    def add(self, stage: str, scores: dict, seconds: float | None = None) -> None:
        for k, v in scores.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise ValueError(f"scorecard: stage {stage} task {k}: score {v!r} is not a finite number")
            if not k.startswith(NOT_FRACTIONS) and not 0.0 <= v <= 1.0:
                raise ValueError(f"scorecard: stage {stage} task {k}: accuracy {v} is not a fraction in [0, 1]")
        self.stages.setdefault(stage, {}).update({k: float(v) for k, v in scores.items()})
        if seconds is not None:
            self.seconds[stage] = round(float(seconds), 1)

    def to_dict(self) -> dict:
        return {"stages": self.stages, "chance": self.chance, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict) -> "Scorecard":
        missing = [k for k in ("stages", "chance", "seconds") if k not in d]
        if missing:
            raise ValueError(f"scorecard: missing key(s) {missing}")
        return cls(dict(d["stages"]), dict(d["chance"]), dict(d["seconds"]))

    def columns(self) -> tuple[list[str], list[str]]:
        """(headline columns, breakdown columns) present in some stage, in a stable order."""
        present = {k for s in self.stages.values() for k in s}
        head = [k for k in HEADLINE if k in present]
        rest = sorted(k for k in present if k not in head)
        return head, rest


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _table(card: Scorecard, cols: list[str], with_seconds: bool) -> list[str]:
    head = ["stage", *cols] + (["seconds"] if with_seconds else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for stage, scores in card.stages.items():
        row = [stage, *(_fmt(scores.get(c)) for c in cols)]
        if with_seconds:
            row.append(f"{card.seconds.get(stage, 0.0):.0f}")
        lines.append("| " + " | ".join(row) + " |")
    row = ["chance", *(_fmt(card.chance.get(c)) for c in cols)] + ([""] if with_seconds else [])
    lines.append("| " + " | ".join(row) + " |")
    return lines


def _by_task(card: Scorecard, keys: list[str]) -> list[str]:
    """The breakdown, one row per task (there are many), one column per stage, chance last."""
    stages = [s for s in card.stages if any(k in card.stages[s] for k in keys)]
    lines = ["| task | " + " | ".join(stages) + " | chance |", "|" + "---|" * (len(stages) + 2)]
    for k in keys:
        row = [k, *(_fmt(card.stages[s].get(k)) for s in stages), _fmt(card.chance.get(k))]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def to_markdown(card: Scorecard, title: str = "xgenmm demo scorecard", notes: list[str] | None = None,
                targets: list[str] | None = None) -> str:
    """`targets`: the "Targets" section's lines (demo.targets.targets_markdown), after the table."""
    head, rest = card.columns()
    lines = [f"# {title}", ""]
    lines += ["Held-out synthetic-world sets; accuracies are fractions (CIDEr for captioning). "
              "`chance` is uniform guessing among the possible answers.", ""]
    lines += _table(card, head, with_seconds=True) + [""]
    if targets:
        lines += ["## Targets", ""] + list(targets) + [""]
    if rest:
        lines += ["## Per question kind and extra measures", ""] + _by_task(card, rest) + [""]
    total = sum(card.seconds.values())
    lines.append(f"Total wall time: {total:.0f} s.")
    for n in notes or []:
        lines += ["", n]
    return "\n".join(lines) + "\n"


def write_scorecard(card: Scorecard, run_dir: Path, notes: list[str] | None = None,
                    targets: list[str] | None = None) -> tuple[Path, Path]:
    run_dir.mkdir(parents=True, exist_ok=True)
    js, md = run_dir / "scorecard.json", run_dir / "scorecard.md"
    write_text_atomic(js, json.dumps(card.to_dict(), indent=2) + "\n")
    write_text_atomic(md, to_markdown(card, notes=notes, targets=targets))
    return js, md


def plot_losses(curves: dict[str, list[tuple[int, float]]], path: Path) -> Path | None:
    """One panel per stage: {stage: [(step, loss), ...]}."""
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(curves)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (stage, pts) in zip(axes.flat, curves.items()):
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.2)
        ax.set_title(stage)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path: Path, dpi: int = 90) -> Path:
    """Write a matplotlib figure as PNG atomically (temp file + os.replace) and close it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def read_trainer_losses(stage_dir: Path) -> list[tuple[int, float]]:
    path = stage_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]
