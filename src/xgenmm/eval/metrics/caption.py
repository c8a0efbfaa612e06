"""Caption metrics as computed by the COCO caption evaluation (pycocoevalcap 1.2): CIDEr-D
and BLEU, on captions tokenised by `ptb_tokenize` (its PTB tokenizer, without Java).

Both take `predictions` {id: caption} and `references` {id: [captions]} with the same ids,
tokenise every caption, and return (corpus score, {id: per-caption score}).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from .ptb_tokenizer import ptb_tokenize
from .uncertainty import bootstrap_stderr

Ngram = tuple[str, ...]


def _check(predictions: Mapping, references: Mapping, name: str) -> list:
    if set(predictions) != set(references):
        missing = sorted(map(str, set(references) - set(predictions)))[:5]
        extra = sorted(map(str, set(predictions) - set(references)))[:5]
        raise ValueError(f"{name}: predictions and references must have the same ids (missing predictions for {missing}, no references for {extra})")
    for key, refs in references.items():
        if isinstance(refs, str) or not isinstance(refs, Sequence) or len(refs) == 0:
            raise ValueError(f"{name}: references[{key!r}] must be a non-empty list of strings")
        if not isinstance(predictions[key], str):
            raise ValueError(f"{name}: predictions[{key!r}] must be a string")
    return list(references)


def _tokenized(predictions: Mapping, references: Mapping, ids: list, tokenize: bool) -> tuple[dict, dict]:
    if not tokenize:
        return {k: predictions[k] for k in ids}, {k: list(references[k]) for k in ids}
    return {k: ptb_tokenize(predictions[k]) for k in ids}, {k: [ptb_tokenize(r) for r in references[k]] for k in ids}


def _ngram_counts(sentence: str, n: int) -> dict[Ngram, int]:
    words = sentence.split()
    counts: dict[Ngram, int] = defaultdict(int)
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i : i + k])] += 1
    return counts


def cider(
    predictions: Mapping, references: Mapping, n: int = 4, sigma: float = 6.0, tokenize: bool = True
) -> tuple[float, dict]:
    """CIDEr-D (the "CIDEr" of the COCO leaderboard, pycocoevalcap's cider_scorer.py):
    tf-idf weighted n-gram vectors (n = 1..4) with document frequencies counted over the
    references of this corpus and log(#images) as the idf numerator; for each reference
    the cosine with clipping (min of the two weights times the reference weight) and the
    Gaussian length penalty exp(-delta^2 / (2 sigma^2)); averaged over n and references,
    times 10. Returns (mean over ids, {id: score}).

    QUIRK (cider_scorer.py): the "length" in the penalty is the number of bigrams
    (`if n == 1: length += term_freq`, with n the 0-based n-gram index), i.e. words - 1.
    Differences of lengths are the same as with word counts except against an empty
    caption, whose similarity is 0 anyway, so the scores do not change; kept as written.
    """
    ids = _check(predictions, references, "cider")
    if not ids:
        raise ValueError("cider: no captions to score")
    preds, refs = _tokenized(predictions, references, ids, tokenize)
    crefs = [[_ngram_counts(r, n) for r in refs[k]] for k in ids]
    ctest = [_ngram_counts(preds[k], n) for k in ids]
    doc_freq: dict[Ngram, float] = defaultdict(float)
    for ref_counts in crefs:
        for ngram in {g for counts in ref_counts for g in counts}:
            doc_freq[ngram] += 1
    log_num_images = math.log(float(len(crefs)))

    def vectorize(counts: dict[Ngram, int]) -> tuple[list[dict], list[float], int]:
        vec: list[dict] = [defaultdict(float) for _ in range(n)]
        norm = [0.0] * n
        length = 0
        for ngram, tf in counts.items():
            df = math.log(max(1.0, doc_freq.get(ngram, 0.0)))
            k = len(ngram) - 1
            vec[k][ngram] = float(tf) * (log_num_images - df)
            norm[k] += vec[k][ngram] ** 2
            if k == 1:
                length += tf
        return vec, [math.sqrt(x) for x in norm], length

    def sim(vh, vr, nh, nr, lh, lr) -> list[float]:
        delta = float(lh - lr)
        val = [0.0] * n
        for k in range(n):
            for ngram, weight in vh[k].items():
                ref_weight = vr[k].get(ngram, 0.0)
                val[k] += min(weight, ref_weight) * ref_weight
            if nh[k] != 0 and nr[k] != 0:
                val[k] /= nh[k] * nr[k]
            val[k] *= math.e ** (-(delta**2) / (2 * sigma**2))
        return val

    scores = {}
    for key, test, ref_counts in zip(ids, ctest, crefs):
        vec, norm, length = vectorize(test)
        total = [0.0] * n
        for rc in ref_counts:
            vr, nr, lr = vectorize(rc)
            for k, v in enumerate(sim(vec, vr, norm, nr, length, lr)):
                total[k] += v
        scores[key] = sum(total) / n / len(ref_counts) * 10.0
    return sum(scores.values()) / len(scores), scores


def bleu_statistics(predictions: Mapping, references: Mapping, n: int = 4,
                    tokenize: bool = True) -> tuple[np.ndarray, dict]:
    """Each caption's BLEU sufficient statistics as pycocoevalcap's bleu_scorer.py counts
    them, one row per id in `references`' order: n-gram guesses for k = 1..n, clipped n-gram
    matches for k = 1..n, the caption's length and its "closest" reference length (the one
    nearest to the caption's, the shorter one on a tie). Corpus BLEU sums the rows
    (`corpus_bleu`); a bootstrap resamples them (`bleu_stderr`). Also returns {id: sentence
    BLEU-n}, pycocoevalcap 1.2's (same constants, brevity penalty from the caption's own
    closest reference length)."""
    ids = _check(predictions, references, "bleu")
    if not ids:
        raise ValueError("bleu: no captions to score")
    preds, refs = _tokenized(predictions, references, ids, tokenize)
    rows = np.zeros((len(ids), 2 * n + 2), dtype=np.int64)
    per_id = {}
    for row, key in enumerate(ids):
        ref_lens, max_counts = [], {}
        for r in refs[key]:
            ref_lens.append(len(r.split()))
            for ngram, count in _ngram_counts(r, n).items():
                max_counts[ngram] = max(max_counts.get(ngram, 0), count)
        test_len = len(preds[key].split())
        counts = _ngram_counts(preds[key], n)
        ref_len = min((abs(length - test_len), length) for length in ref_lens)[1]
        guess = [max(0, test_len - k + 1) for k in range(1, n + 1)]
        correct = [0] * n
        for ngram, count in counts.items():
            correct[len(ngram) - 1] += min(max_counts.get(ngram, 0), count)
        rows[row] = guess + correct + [test_len, ref_len]
        per_id[key] = _bleu_from_counts(guess, correct, test_len, ref_len, n)
    return rows, per_id


_TINY, _SMALL = 1e-15, 1e-9  # bleu_scorer.py's constants


def _bleu_from_counts(guess, correct, test_len, ref_len, n: int) -> float:
    score = 1.0
    for k in range(n):
        score *= (float(correct[k]) + _TINY) / (float(guess[k]) + _SMALL)
    score = score ** (1.0 / n)
    ratio = (float(test_len) + _TINY) / (float(ref_len) + _SMALL)
    if ratio < 1:
        score *= math.exp(1 - 1 / ratio)
    return score


def _bleu_rows(rows, n: int) -> np.ndarray:
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] != 2 * n + 2:
        raise ValueError(f"bleu: bleu_statistics rows for n={n} have {2 * n + 2} columns, got shape {rows.shape}")
    return rows


def corpus_bleu(rows: np.ndarray, n: int = 4) -> float:
    """Corpus BLEU-n from `bleu_statistics` rows: clipped n-gram precisions summed over the
    corpus, geometric mean, brevity penalty from the summed lengths."""
    t = _bleu_rows(rows, n).sum(axis=0)
    return _bleu_from_counts(t[:n], t[n:2 * n], t[2 * n], t[2 * n + 1], n)


def bleu_stderr(rows: np.ndarray, n: int = 4, n_resamples: int = 1000, seed: int = 0) -> float | None:
    """Standard error of corpus BLEU-n: its standard deviation over seeded bootstrap
    resamples of the captions (`bleu_statistics` rows), as lm-evaluation-harness does for
    its corpus metrics; None below two captions."""
    rows = _bleu_rows(rows, n)
    if len(rows) >= 2 and np.all(rows == rows[0]):
        return 0.0  # every resample is the same corpus
    return bootstrap_stderr(lambda idx: corpus_bleu(rows[idx], n), np.arange(len(rows)),
                            n_resamples=n_resamples, seed=seed)


def bleu(predictions: Mapping, references: Mapping, n: int = 4, tokenize: bool = True) -> tuple[float, dict]:
    """Corpus BLEU-n as pycocoevalcap's bleu_scorer.py computes it (`bleu_statistics`,
    `corpus_bleu`). Returns (BLEU-n, {id: sentence BLEU-n})."""
    rows, per_id = bleu_statistics(predictions, references, n, tokenize)
    return corpus_bleu(rows, n), per_id
