"""Evaluation metrics as plain functions, each matching the official implementation that
published numbers were computed with (quirks included, named where they live)."""

from .caption import bleu, bleu_statistics, bleu_stderr, cider, corpus_bleu
from .choice import extract_choice, mc_accuracy, relaxed_accuracy
from .grounding import box_iou, grounding_accuracy, parse_box
from .pope import pope_answer, pope_scores
from .ptb_tokenizer import ptb_tokenize
from .vqa import anls, levenshtein, normalize_vqa_answer, vqa_accuracy

__all__ = [
    "anls",
    "bleu",
    "bleu_statistics",
    "bleu_stderr",
    "box_iou",
    "cider",
    "corpus_bleu",
    "extract_choice",
    "grounding_accuracy",
    "levenshtein",
    "mc_accuracy",
    "normalize_vqa_answer",
    "parse_box",
    "pope_answer",
    "pope_scores",
    "ptb_tokenize",
    "relaxed_accuracy",
    "vqa_accuracy",
]
