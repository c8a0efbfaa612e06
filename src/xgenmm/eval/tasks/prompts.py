"""Prompt texts shared by the task declarations (LLaVA / lmms-eval wording for instruct
models, OpenFlamingo's for base-model few-shot)."""

from __future__ import annotations

from collections import Counter

from .base import Sample, options_block

SHORT_ANSWER = "Answer the question using a single word or phrase."
LETTER_ANSWER = "Answer with the option's letter from the given choices directly."
CAPTION_INSTRUCTION = "Provide a one-sentence caption for the provided image."


def short_answer(s: Sample) -> str:
    return f"{s.question}\n{SHORT_ANSWER}"


def verbatim(s: Sample) -> str:
    return s.question


def multiple_choice(s: Sample) -> str:
    hint = s.meta.get("hint")
    head = f"{hint}\n{s.question}" if hint else s.question
    return f"{head}\n{options_block(s.options or [])}\n{LETTER_ANSWER}"


def caption(s: Sample) -> str:
    return CAPTION_INSTRUCTION


# ---- base-model few-shot (instruction, then the answer, then <|endofchunk|>) ----


def base_vqa(s: Sample) -> str:
    return f"Question:{s.question} Short answer:"


def base_caption(s: Sample) -> str:
    return "Output:"


def majority_answer(s: Sample) -> str:
    """A demonstration's answer: VQA's multiple_choice_answer, else the most common one."""
    if "multiple_choice_answer" in s.meta:
        return str(s.meta["multiple_choice_answer"])
    return Counter(s.answers).most_common(1)[0][0]


def first_reference(s: Sample) -> str:
    return s.answers[0]
