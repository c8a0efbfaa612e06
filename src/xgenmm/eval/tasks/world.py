"""Tasks on the synthetic world's held-out sets (src/xgenmm/synth/evalsets.py writes them in
these layouts under <world>/eval/). The world's models were taught with "one `<image>\\n` per
image, then the question verbatim", so the prompts are the questions as written."""

from __future__ import annotations

from functools import partial

from . import formats as F
from . import prompts as P
from .base import Task

WORLD = [
    Task("world_vqa", "vqa", "world_vqa",
         "questions.json {questions: [{image_id, question, question_id}]} + annotations.json {annotations: "
         "[{question_id, image_id, question_type, answers: [{answer, answer_id}] x10, multiple_choice_answer}]}; images/{image_id}.png",
         partial(F.read_vqa_pair, questions=["questions.json"], annotations=["annotations.json"], image_path=lambda i: f"images/{i}.png"),
         P.verbatim, P.base_vqa, P.majority_answer, max_new_tokens=24, breakdown="question_type",
         # "locating" answers are "<bbox>x1, y1, x2, y2</bbox>" texts: the VQA normalisation
         # would mangle the prediction but not the ten identical references, so never match
         box_question_types=("locating",)),
    Task("world_caption", "caption", "world_caption",
         "captions.json (COCO format {images: [{id, file_name}], annotations: [{id, image_id, caption}]}); file_name relative to the folder",
         partial(F.read_coco_captions, names=["captions.json"]),
         lambda s: "Describe the image.", lambda s: "", P.first_reference, max_new_tokens=40),
    Task("world_mc", "mc", "world_mc", "mc.tsv (MMBench TSV: index, question, A-D, answer, category, image = base64 PNG)",
         partial(F.read_tsv, names=["mc.tsv"]), P.verbatim, max_new_tokens=16, mc_scoring="likelihood", breakdown="category"),
    Task("world_pope", "pope", "world_pope", "pope.jsonl {question_id, image, text, label: yes|no, category}; images/",
         partial(F.read_pope, names=["pope.jsonl"]), P.verbatim, max_new_tokens=4, breakdown="category"),
    Task("world_multi", "multi", "world_multi",
         "multi.json [{id, images: [file, ...], question, answer, question_type, options?: [...]}]; images/",
         partial(F.read_multi_json, names=["multi.json"]), P.verbatim, max_new_tokens=8, breakdown="question_type"),
    Task("world_grounding", "grounding", "world_grounding",
         "grounding.jsonl {id, image, expression, bbox: [x1, y1, x2, y2] pixels, width, height, prompt?}; images/",
         partial(F.read_grounding, names=["grounding.jsonl"]),
         lambda s: s.meta.get("prompt") or f"Give the bounding box of {s.question}.", max_new_tokens=32),
    Task("world_safety", "safety", "world_safety", "safety.jsonl {id, image?, prompt, unsafe: bool, answer?}; images/",
         partial(F.read_safety, names=["safety.jsonl"]), P.verbatim, max_new_tokens=24, breakdown="question_type",
         refusal="I'm sorry, but I can't help with that request."),
]
