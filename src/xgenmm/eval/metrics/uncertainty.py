"""Standard errors beside the scores, as lm-evaluation-harness and lmms-eval report them
(`<metric>_stderr`): how far a score would move on another draw of the same number of
samples from the same distribution. Read a difference of less than about two standard
errors as noise.

- A score that is a mean of per-sample scores (accuracy, VQA accuracy, ANLS, a rate, and
  CIDEr-D, whose corpus score is the mean of its per-image scores): the sample standard
  deviation over sqrt(n) (`mean_stderr`). For CIDEr-D the document frequencies are held
  fixed: they come from the references, not from the predictions.
- Two evaluations of the same samples (a model before and after a stage, 0-shot against
  4-shot): the standard error of the mean of the per-sample differences (`paired_difference`),
  far smaller than either score's own when the two agree on most samples.
- A score that is not a mean (POPE's F1, precision and recall; corpus BLEU, `caption.bleu_stderr`):
  the standard deviation of the score over bootstrap resamples of the samples
  (`bootstrap_stderr`, scipy's `stats.bootstrap`, seeded).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy import stats


def mean_stderr(values: Sequence[float]) -> float | None:
    """Standard error of the mean of `values` (sample standard deviation, ddof 1, over
    sqrt(n)); None for fewer than two values."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return None
    return float(stats.sem(x))


def paired_difference(after: Mapping, before: Mapping) -> tuple[float, float | None, int]:
    """(mean of after[id] - before[id], its standard error, number of ids) over the ids both
    score. Raises when they share none."""
    ids = sorted(set(after) & set(before), key=str)
    if not ids:
        raise ValueError("paired_difference: the two evaluations share no sample id")
    d = [float(after[i]) - float(before[i]) for i in ids]
    return float(np.mean(d)), mean_stderr(d), len(ids)


def bootstrap_stderr(statistic: Callable[..., float], *columns: Sequence, n_resamples: int = 1000,
                     seed: int = 0) -> float | None:
    """Standard deviation of `statistic(*columns)` over `n_resamples` bootstrap resamples of
    the rows (the columns resampled together); None for fewer than two rows. `statistic`
    takes 1-D arrays and returns a float."""
    arrays = [np.asarray(c) for c in columns]
    if not arrays or len(arrays[0]) < 2:
        return None
    if any(len(a) != len(arrays[0]) for a in arrays):
        raise ValueError("bootstrap_stderr: columns differ in length")
    if all(np.all(a == a[0]) for a in arrays):
        return 0.0  # every resample is the sample itself
    res = stats.bootstrap(arrays, statistic, paired=True, vectorized=False, n_resamples=n_resamples,
                          method="percentile", random_state=np.random.default_rng(seed))
    se = float(res.standard_error)
    return se if math.isfinite(se) else None


def binary_precision(predicted_yes: Sequence[bool], label_yes: Sequence[bool]) -> float:
    """Precision with "yes" as the positive class, 0 when nothing is predicted "yes" (POPE's)."""
    p, y = np.asarray(predicted_yes, dtype=bool), np.asarray(label_yes, dtype=bool)
    return float(np.sum(p & y)) / float(np.sum(p)) if np.any(p) else 0.0


def binary_recall(predicted_yes: Sequence[bool], label_yes: Sequence[bool]) -> float:
    """Recall with "yes" as the positive class, 0 when no label is "yes" (POPE's)."""
    p, y = np.asarray(predicted_yes, dtype=bool), np.asarray(label_yes, dtype=bool)
    return float(np.sum(p & y)) / float(np.sum(y)) if np.any(y) else 0.0


def binary_f1(predicted_yes: Sequence[bool], label_yes: Sequence[bool]) -> float:
    """F1 with "yes" as the positive class (POPE's), 0 when it has no true positive."""
    p, y = np.asarray(predicted_yes, dtype=bool), np.asarray(label_yes, dtype=bool)
    tp = float(np.sum(p & y))
    return 2 * tp / (float(np.sum(p)) + float(np.sum(y))) if tp else 0.0
