"""Caption metrics as computed by the COCO caption evaluation (pycocoevalcap 1.2): CIDEr-D
and BLEU, on captions tokenised by `ptb_tokenize` (its PTB tokenizer, without Java).

Both take `predictions` {id: caption} and `references` {id: [captions]} with the same ids,
tokenise every caption, and return (corpus score, {id: per-caption score}).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

from .ptb_tokenizer import ptb_tokenize

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


def bleu(predictions: Mapping, references: Mapping, n: int = 4, tokenize: bool = True) -> tuple[float, dict]:
    """Corpus BLEU-n as pycocoevalcap's bleu_scorer.py with its "closest" reference length
    (the reference length nearest to the candidate's, the shorter one on a tie): clipped
    n-gram precisions summed over the corpus, geometric mean, brevity penalty from the
    summed lengths (tiny/small constants 1e-15/1e-9 as there).

    Returns (BLEU-n, {id: sentence BLEU-n}); the sentence scores are pycocoevalcap 1.2's
    (same constants, brevity penalty from the caption's own closest reference length).
    """
    ids = _check(predictions, references, "bleu")
    if not ids:
        raise ValueError("bleu: no captions to score")
    preds, refs = _tokenized(predictions, references, ids, tokenize)
    tiny, small = 1e-15, 1e-9
    total_guess, total_correct = [0] * n, [0] * n
    test_len_sum, ref_len_sum = 0, 0
    per_id = {}
    for key in ids:
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
        for k in range(n):
            total_guess[k] += guess[k]
            total_correct[k] += correct[k]
        test_len_sum += test_len
        ref_len_sum += ref_len
        sentence = 1.0
        for k in range(n):
            sentence *= (float(correct[k]) + tiny) / (float(guess[k]) + small)
        sentence = sentence ** (1.0 / n)
        sentence_ratio = (test_len + tiny) / (ref_len + small)
        if sentence_ratio < 1:
            sentence *= math.exp(1 - 1 / sentence_ratio)
        per_id[key] = sentence
    score = 1.0
    for k in range(n):
        score *= float(total_correct[k] + tiny) / (total_guess[k] + small)
    score = score ** (1.0 / n)
    ratio = (test_len_sum + tiny) / (ref_len_sum + small)
    if ratio < 1:
        score *= math.exp(1 - 1 / ratio)
    return score, per_id
