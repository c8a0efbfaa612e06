"""Multiple-choice answers and short numeric answers: option extraction from free text,
accuracy with a count of unparseable answers, and ChartQA's relaxed accuracy."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

LETTERS = string.ascii_uppercase

# Explicit answer statements, tried first: "Answer: B", "the answer is (B)", "The answer is: B", "option B".
_STATED = re.compile(
    r"(?:answer|option|choice)\s*(?:is\s*)?:?\s*(?:option\s*)?[\(\[]?([A-Z])[\)\].:]?(?![A-Za-z])", re.IGNORECASE
)
# A letter standing alone at the start: "B", "B.", "(B)", "B)", "B: text", "[B]".
_LEADING = re.compile(r"^\s*[\(\[]?([A-Z])(?:[\)\].:,]|\s|$)")
# A letter in parentheses anywhere: "... so (B)".
_PAREN = re.compile(r"\(([A-Z])\)")


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def extract_choice(text: str, options: Sequence[str]) -> str | None:
    """The option letter ("A", "B", ...) that free text `text` picks among `options`
    (option texts in letter order), or None when it cannot be told.

    Markdown emphasis is read through ("**B**"). In order: an explicit statement ("Answer: B",
    "the answer is (B)", "The answer is: B"); a letter alone at the
    start ("B", "(B)", "B. a cat"); a lone letter in parentheses; the text equal to one
    option's text; exactly one option's text contained in the text. Letters beyond the
    number of options are ignored. Matching of option text ignores case and punctuation.
    """
    if not options:
        raise ValueError("extract_choice: no options")
    valid = LETTERS[: len(options)]
    text = re.sub(r"\*+", "", text or "").strip()  # Markdown emphasis: "**B**", "answer is **B**"
    if not text:
        return None
    for pattern in (_STATED, _LEADING):
        m = pattern.search(text)
        if m and m.group(1).upper() == m.group(1) and m.group(1) in valid:
            # a lower-case "a" at the start is an article, not option A
            return m.group(1)
    parens = {c for c in _PAREN.findall(text) if c in valid}
    if len(parens) == 1:
        return parens.pop()
    norm_text = _norm(text)
    norm_opts = [_norm(str(o)) for o in options]
    for letter, opt in zip(valid, norm_opts):
        if opt and norm_text == opt:
            return letter
    contained = [letter for letter, opt in zip(valid, norm_opts) if opt and re.search(rf"\b{re.escape(opt)}\b", norm_text)]
    # an option contained in a longer one ("cat" in "black cat") does not count twice
    contained = [c for c in contained if not any(c != o and norm_opts[valid.index(c)] in norm_opts[valid.index(o)] for o in contained)]
    if len(contained) == 1:
        return contained[0]
    return None


def mc_accuracy(predictions: Sequence[str], answers: Sequence[str], options: Sequence[Sequence[str]]) -> dict:
    """Accuracy of free-text `predictions` against answer letters; an answer that cannot be
    parsed counts as wrong and is counted in "unparseable"."""
    if not (len(predictions) == len(answers) == len(options)):
        raise ValueError("mc_accuracy: predictions, answers and options differ in length")
    correct = unparseable = 0
    for pred, ans, opts in zip(predictions, answers, options):
        choice = extract_choice(pred, opts)
        if choice is None:
            unparseable += 1
        elif choice == ans:
            correct += 1
    n = len(predictions)
    return {"accuracy": correct / n if n else 0.0, "unparseable": unparseable, "count": n}


def _to_float(text: str) -> float | None:
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def relaxed_accuracy(prediction: str, answer: str, tolerance: float = 0.05) -> float:
    """ChartQA's relaxed correctness (pix2struct's `relaxed_correctness`): numbers within
    `tolerance` relative error of the answer ("12%" reads as 0.12), anything else by
    case-insensitive equality. QUIRK (official): an answer of 0 is falsy there, so it is
    compared as a string ("0" vs "0.0" is wrong)."""
    prediction, answer = prediction.strip(), answer.strip()
    pred_f, ans_f = _to_float(prediction), _to_float(answer)
    if pred_f is not None and ans_f:
        return float(abs(pred_f - ans_f) / abs(ans_f) <= tolerance)
    return float(prediction.lower() == answer.lower())
