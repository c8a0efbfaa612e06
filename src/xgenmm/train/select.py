"""A DPO stage's final model chosen by its preference accuracy on held-out pairs.

With `dpo.select_source` (pairs the stage does not train on) the trainer scores those pairs
before the first step and every `dpo.select_every` steps (and at the last): the share whose
chosen answer the policy prefers (the summed log-probability of the chosen answer minus that
of the rejected one, as the DPO loss computes them, above 0) and the mean of that margin.
This is the policy's own ranking, the demo's `preference_accuracy`; TRL's
`rewards/accuracies` counts the implicit rewards instead (each log-probability minus the
reference model's), which are all 0 at step 0 and so cannot compare a step with the model
the stage began from. The stage's final model is the evaluated
step with the highest accuracy, the earliest of equals (step 0 is the model the stage began
from), as Hugging Face's Trainer does with `load_best_model_at_end`; the evaluations are in
RUN_DIR/selection.json.

Why: a short DPO stage moves a model along one direction (for a model that says "yes" to
absent objects, towards "no"), and how far is right depends on the model; past the best
point it trades the pairs it had right for the ones it had wrong (docs/demo-recipe.md).

The best step's trainable weights (the LoRA adapters) are kept in memory, and in every
checkpoint (`select_best.safetensors`, the evaluations in its trainer.json), so that a
resumed stage chooses as an uninterrupted one would."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger("xgenmm.train")

BEST_FILE = "select_best.safetensors"


class StepSelector:
    """Scores the pairs of `source` with the policy and keeps the best step's trainable weights."""

    def __init__(self, source: str, processor, max_length: int, batch_size: int = 16):
        from ..data.encode import EncodeConfig, Encoder
        from ..data.errors import SkipStats
        from ..data.sources import SourceConfig, open_source
        from .mine_pairs import encode_pair

        self.source, self.batch_size, self.pad = source, batch_size, processor.pad_token_id
        stats = SkipStats()
        encoder = Encoder(processor, EncodeConfig(max_length=max_length), stats)
        self.pairs, read = [], 0
        for item in open_source(SourceConfig(path=source, shuffle=False)).iterate(0):
            read += 1
            got = encode_pair(item, encoder, stats)
            if got is not None:
                self.pairs.append(got[2])
        if not self.pairs:
            raise ValueError(f"dpo.select_source {source}: no preference pair could be read ({read} records; skipped by "
                             f"reason: {dict(stats.skipped)})")
        if stats.skipped:
            log.warning("dpo.select_source %s: %d bad pair(s) skipped, by reason: %s", source,
                        sum(stats.skipped.values()), dict(stats.skipped))
        self.history: list[dict] = []
        self.best: dict | None = None
        self.best_state: dict[str, torch.Tensor] | None = None

    def evaluate(self, model) -> dict:
        """{accuracy, margin, pairs} of the policy as it is now."""
        from .mine_pairs import pair_margins

        was_training = model.training
        model.eval()
        margins: list[float] = []
        try:
            with torch.no_grad():
                for i in range(0, len(self.pairs), self.batch_size):
                    margins += pair_margins(model, self.pairs[i:i + self.batch_size], self.pad)
        finally:
            model.train(was_training)
        return {"accuracy": sum(m > 0 for m in margins) / len(margins), "margin": sum(margins) / len(margins),
                "pairs": len(margins)}

    def consider(self, step: int, model) -> dict:
        """Evaluate the policy at `step`; keep its trainable weights when it is the best so far."""
        entry = {"step": step, **self.evaluate(model)}
        self.history.append(entry)
        if self.best is None or entry["accuracy"] > self.best["accuracy"]:
            self.best = entry
            self.best_state = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}
        log.info("selection: step %d, preference accuracy %.4f over %d held-out pairs (mean margin %.3f); best: step %d",
                 step, entry["accuracy"], entry["pairs"], entry["margin"], self.best["step"])
        return entry

    def restore_best(self, model, step: int) -> dict:
        """Load the best step's trainable weights into `model` (now at `step`); returns the best entry."""
        if self.best is None or self.best_state is None:
            raise RuntimeError("selection: no step was evaluated")
        if self.best["step"] != step:
            params = dict(model.named_parameters())
            with torch.no_grad():
                for n, v in self.best_state.items():
                    params[n].copy_(v.to(params[n].device, params[n].dtype))
        return self.best

    # ---- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict:
        """The evaluations, for a checkpoint's trainer.json (`save_into` writes the weights; the
        best entry is the history's first of the highest accuracy)."""
        return {"history": self.history}

    def save_into(self, directory: Path) -> None:
        from safetensors.torch import save_file

        if self.best_state:
            save_file({n: v.contiguous() for n, v in self.best_state.items()}, str(directory / BEST_FILE))

    def load_from(self, info: dict, directory: Path) -> None:
        """Restore what `state` / `save_into` wrote with a checkpoint."""
        from safetensors.torch import load_file

        self.history = list(info.get("history", []))
        top = max((h["accuracy"] for h in self.history), default=None)
        self.best = next((h for h in self.history if h["accuracy"] == top), None)
        path = directory / BEST_FILE
        if self.best is not None:
            if not path.is_file():
                raise FileNotFoundError(f"{directory}: the checkpoint records a selected step ({self.best['step']}) "
                                        f"but has no {BEST_FILE}")
            self.best_state = load_file(str(path))
