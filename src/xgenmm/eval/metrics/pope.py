"""POPE (object hallucination, yes/no questions): answer reading and the five scores."""

from __future__ import annotations

from collections.abc import Sequence


def pope_answer(text: str) -> str:
    """Read a free-text answer as "yes" or "no" the way LLaVA's eval_pope.py does: keep
    the first sentence, drop commas, and answer "no" when the words contain "No", "no" or
    "not", "yes" otherwise (so an empty or off-topic answer counts as "yes")."""
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def pope_scores(predictions: Sequence[str], labels: Sequence[str]) -> dict:
    """Accuracy, precision, recall, F1 (positive = "yes") and the ratio of "yes" answers.
    `predictions` are free text (read by `pope_answer`), `labels` "yes"/"no". A ratio with
    an empty denominator is 0."""
    if len(predictions) != len(labels):
        raise ValueError("pope_scores: predictions and labels differ in length")
    bad = [lab for lab in labels if lab not in ("yes", "no")]
    if bad:
        raise ValueError(f"pope_scores: labels must be 'yes' or 'no', got {bad[0]!r}")
    preds = [pope_answer(p) for p in predictions]
    tp = sum(p == "yes" and l == "yes" for p, l in zip(preds, labels))
    fp = sum(p == "yes" and l == "no" for p, l in zip(preds, labels))
    tn = sum(p == "no" and l == "no" for p, l in zip(preds, labels))
    fn = sum(p == "no" and l == "yes" for p, l in zip(preds, labels))
    n = len(preds)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / n if n else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": (tp + fp) / n if n else 0.0,
    }
