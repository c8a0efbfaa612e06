"""The paper's benchmarks (reference section 10), each a declaration over its public layout.
Put each benchmark's files in a folder under --data named as `folder` below; few-shot
demonstrations come from the same layout under `{folder}_train`."""

from __future__ import annotations

from functools import partial

from . import formats as F
from . import prompts as P
from .base import Task

VQA_PAIR_LAYOUT = ("questions JSON {{\"questions\": [{{image_id, question, question_id}}]}} ({q}) + annotations JSON "
                   "{{\"annotations\": [{{question_id, answers: [{{answer}}] x10, question_type}}]}} ({a}); images {img}")


def _coco_image(split: str, image_id) -> str:
    return f"{split}/COCO_{split}_{int(image_id):012d}.jpg"


VQAV2_Q = ["v2_OpenEnded_mscoco_val2014_questions.json", "questions.json"]
VQAV2_A = ["v2_mscoco_val2014_annotations.json", "annotations.json"]
OKVQA_Q = ["OpenEnded_mscoco_val2014_questions.json", "questions.json"]
OKVQA_A = ["mscoco_val2014_annotations.json", "annotations.json"]

BENCHMARKS = [
    # ---- few-shot VQA and captioning (base model) and their instruct forms ----
    Task("vqav2", "vqa", "vqav2", VQA_PAIR_LAYOUT.format(q=VQAV2_Q[0], a=VQAV2_A[0], img="val2014/COCO_val2014_{image_id:012d}.jpg"),
         partial(F.read_vqa_pair, questions=VQAV2_Q, annotations=VQAV2_A, image_path=partial(_coco_image, "val2014")),
         P.short_answer, P.base_vqa, P.majority_answer, max_new_tokens=10, breakdown="answer_type"),
    Task("okvqa", "vqa", "okvqa", VQA_PAIR_LAYOUT.format(q=OKVQA_Q[0], a=OKVQA_A[0], img="val2014/COCO_val2014_{image_id:012d}.jpg"),
         partial(F.read_vqa_pair, questions=OKVQA_Q, annotations=OKVQA_A, image_path=partial(_coco_image, "val2014")),
         P.short_answer, P.base_vqa, P.majority_answer, max_new_tokens=10, breakdown="question_type"),
    Task("textvqa", "vqa", "textvqa",
         "TextVQA_0.5.1_val.json {\"data\": [{question_id, question, image_id, answers: [str] x10}]}; images train_images/{image_id}.jpg",
         partial(F.read_answers_json, names=["TextVQA_0.5.1_val.json"], image_field="image_id",
                 image_path=lambda i: f"train_images/{i}.jpg", id_field="question_id"),
         P.short_answer, P.base_vqa, P.majority_answer, max_new_tokens=10),
    Task("vizwiz", "vqa", "vizwiz",
         "val.json [{image, question, answers: [{answer, answer_confidence}] x10, answer_type}]; images val/{image}",
         partial(F.read_answers_json, names=["val.json"], image_field="image", image_path=lambda i: f"val/{i}", id_field=None),
         lambda s: f"{s.question}\nWhen the provided information is insufficient, respond with 'Unanswerable'.\n{P.SHORT_ANSWER}",
         P.base_vqa, P.majority_answer, max_new_tokens=10, breakdown="answer_type"),
    Task("coco_caption", "caption", "coco_caption",
         "COCO captions JSON (captions_val2014.json or the Karpathy test split in COCO format) "
         "{images: [{id, file_name}], annotations: [{image_id, caption}]}; images val2014/{file_name}",
         partial(F.read_coco_captions, names=["captions_val2014.json", "captions_test.json", "captions.json"], image_dir="val2014"),
         P.caption, P.base_caption, P.first_reference, max_new_tokens=30),
    Task("nocaps", "caption", "nocaps",
         "nocaps_val_4500_captions.json (COCO format); images images/{file_name}",
         partial(F.read_coco_captions, names=["nocaps_val_4500_captions.json", "captions.json"], image_dir="images"),
         P.caption, P.base_caption, P.first_reference, max_new_tokens=30),
    Task("textcaps", "caption", "textcaps",
         "TextCaps_0.1_val.json {\"data\": [{image_id, image_name, reference_strs}]} or COCO format; images train_images/{image_name}.jpg",
         partial(F.read_coco_captions, names=["TextCaps_0.1_val.json", "captions.json"], image_dir="train_images"),
         P.caption, P.base_caption, P.first_reference, max_new_tokens=30),
    # ---- instruct, single image ----
    Task("mmbench", "mc", "mmbench", "MMBench_DEV_EN.tsv: index, question, hint, A-D, answer, category, l2-category, image (base64)",
         partial(F.read_tsv, names=["MMBench_DEV_EN.tsv", "mmbench.tsv"]), P.multiple_choice, max_new_tokens=8, breakdown="category"),
    Task("seed_img", "mc", "seed_img", "SEEDBench_IMG.tsv: index, question, A-D, answer, category, image (base64)",
         partial(F.read_tsv, names=["SEEDBench_IMG.tsv", "seed.tsv"]), P.multiple_choice, max_new_tokens=8, breakdown="category"),
    Task("scienceqa_img", "mc", "scienceqa_img",
         "ScienceQA_TEST.tsv (the image questions): index, question, hint, A-E, answer, image (base64)",
         partial(F.read_tsv, names=["ScienceQA_TEST.tsv", "scienceqa.tsv"]), P.multiple_choice, max_new_tokens=8, breakdown="category"),
    Task("ai2d", "mc", "ai2d", "AI2D_TEST.tsv: index, question, A-D, answer, image (base64)",
         partial(F.read_tsv, names=["AI2D_TEST.tsv", "ai2d.tsv"]), P.multiple_choice, max_new_tokens=8),
    Task("mmmu", "mc", "mmmu",
         "MMMU_DEV_VAL.tsv (multiple-choice rows of the validation split): index, question, A-I, answer, image (base64 or a list)",
         partial(F.read_tsv, names=["MMMU_DEV_VAL.tsv", "mmmu.tsv"],
                 filter_row=lambda r: r.get("split", "validation") in ("validation", "") and r.get("question_type", "multiple-choice") != "open"),
         P.multiple_choice, max_new_tokens=8, breakdown="category"),
    Task("mathvista_mc", "mc", "mathvista",
         "MathVista_MINI.tsv (rows with question_type multi_choice): index, question, choices (a list), answer (the option text), image (base64)",
         partial(F.read_tsv, names=["MathVista_MINI.tsv", "mathvista.tsv"], filter_row=lambda r: r.get("question_type") == "multi_choice"),
         P.multiple_choice, max_new_tokens=8),
    Task("pope", "pope", "pope",
         "coco_pope_{random,popular,adversarial}.json (JSON lines {question_id, image, text, label}); images val2014/{image}",
         partial(F.read_pope, names=["coco_pope_random.json", "coco_pope_popular.json", "coco_pope_adversarial.json"], image_dir="val2014"),
         P.short_answer, max_new_tokens=4, breakdown="category"),
    # ---- instruct, multi-image ----
    Task("blink", "mc", "blink", "BLINK.tsv (validation): index, question, A-D, answer, category, image (a list of base64)",
         partial(F.read_tsv, names=["BLINK.tsv", "blink.tsv"]), P.multiple_choice, max_new_tokens=8, breakdown="category"),
    Task("qbench2", "mc", "qbench2", "QBench2 pair questions as TSV: index, question, A-D, answer, category, image (a list of two base64)",
         partial(F.read_tsv, names=["Q-Bench2.tsv", "qbench2.tsv"]), P.multiple_choice, max_new_tokens=8, breakdown="category"),
    Task("mantis_eval", "multi", "mantis_eval",
         "mantis_eval.json [{id, images: [file], question (with <image> tags), options: [...], answer (letter or text), question_type}]",
         partial(F.read_multi_json, names=["mantis_eval.json", "test.json"]),
         lambda s: P.multiple_choice(s) if s.options else P.short_answer(s), max_new_tokens=16, breakdown="question_type"),
]
