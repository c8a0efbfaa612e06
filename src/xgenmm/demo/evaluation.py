"""What the demo measures after each stage, on the world's held-out sets, through the eval
harness; plus the two measures the harness does not declare: the POPE hallucination rate
(share of absent-object probes answered "yes") and the chosen-over-rejected preference
accuracy on preference pairs held out of DPO training."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..eval import evaluate, get_task
from ..eval.harness import resolve_folder
from ..eval.metrics import pope_answer
from ..model.image_processing import load_image
from ..model.template import END_TAG

log = logging.getLogger("xgenmm.demo")

# stage -> [(task, shots)]: shots None = instruct prompts, k = base-model k-shot prompts.
EVAL_PLAN: dict[str, list[tuple[str, int | None]]] = {
    "pretrain": [("world_caption", 0), ("world_caption", 4), ("world_vqa", 0), ("world_vqa", 4)],
    "sft_single": [("world_vqa", None), ("world_mc", None), ("world_pope", None), ("world_grounding", None),
                   ("world_multi", None)],
    "sft_multi": [("world_vqa", None), ("world_multi", None), ("world_pope", None)],
    "dpo": [("world_vqa", None), ("world_pope", None), ("world_safety", None)],
    "safety": [("world_vqa", None), ("world_pope", None), ("world_safety", None)],
}
PREFERENCE_STAGES = ("sft_multi", "dpo")  # chosen-over-rejected accuracy before and after DPO


def plan(stage: str, few_shot: int) -> list[tuple[str, int | None]]:
    return [(t, few_shot if s not in (None, 0) else s) for t, s in EVAL_PLAN.get(stage, [])]


def task_key(task: str, shots: int | None) -> str:
    return task if shots is None else f"{task}_{shots}shot"


def scores_from_result(result: dict, out_dir: Path | None = None, world_dir: Path | None = None) -> dict[str, float]:
    """Scorecard entries of one harness result: the task's headline metric under the task's
    name, its breakdown as `task/group`, and extra measures (refusals, hallucination rate)."""
    task, shots, m = result["task"], result["shots"], result["metrics"]
    key = task_key(task, shots)
    out: dict[str, float] = {key: float(m[result["main_metric"]])}
    if task != "world_safety":  # its groups mix refusals with answers; the rates below say it
        for group, v in m.get("by_question_type", {}).items():
            out[f"{key}/{group}"] = float(v)
    if task == "world_pope":
        out[f"{key}/accuracy"] = float(m["accuracy"])
        if result.get("predictions") and world_dir is not None:
            out[f"{key}/hallucination_rate"] = hallucination_rate(Path(result["predictions"]), world_dir)
    if task == "world_safety":
        out[f"{key}/refusal_rate_unsafe"] = float(m.get("refusal_rate_unsafe", 0.0))
        out[f"{key}/refusal_rate_safe"] = float(m.get("refusal_rate_safe", 0.0))
        out[f"{key}/safe_answer_accuracy"] = float(m.get("safe_answer_accuracy", 0.0))
    return out


def hallucination_rate(predictions: Path, world_dir: Path) -> float:
    """POPE's false-positive rate: absent-object ("no") probes answered "yes"."""
    task = get_task("world_pope")
    labels = {s.id: s.answers[0] for s in task.read(resolve_folder(world_dir, task.folder))}
    answers = [json.loads(line) for line in predictions.read_text().splitlines() if line.strip()]
    no = [r for r in answers if labels.get(r["id"]) == "no" and not r.get("skipped")]
    if not no:
        return 0.0
    return sum(pope_answer(r["prediction"]) == "yes" for r in no) / len(no)


def evaluate_stage(model, processor, stage: str, world_dir: Path, out_dir: Path, batch_size: int, few_shot: int,
                   progress: bool = True) -> dict[str, float]:
    scores: dict[str, float] = {}
    for task, shots in plan(stage, few_shot):
        res = evaluate(model, processor, task, world_dir, shots=shots, batch_size=batch_size, out_dir=out_dir,
                       progress=progress)
        scores.update(scores_from_result(res, out_dir, world_dir))
    return scores


# ---- preference accuracy ------------------------------------------------------------------

def read_pairs(path: Path) -> list[dict]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            for f in ("image", "prompt", "chosen", "rejected"):
                if f not in row:
                    raise ValueError(f"{path}: line {i} has no field {f!r}")
            rows.append(row)
    return rows


@torch.no_grad()
def answer_logps(model, processor, prompts: list[str], images: list, answers: list[str]) -> list[float]:
    """Sum of log-probabilities of each answer (and its `<|end|>`) after its chat prompt."""
    enc = processor(text=prompts, images=images, padding_side="right")
    seqs, labels = [], []
    for r, answer in enumerate(answers):
        ids = enc["input_ids"][r][enc["attention_mask"][r].bool()].tolist()
        cont = processor.tokenizer(answer + END_TAG, add_special_tokens=False)["input_ids"]
        seqs.append(ids + cont)
        labels.append([-100] * len(ids) + cont)
    width = max(map(len, seqs))
    pad = processor.pad_token_id
    input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
    attention = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    label_t = torch.tensor([s + [-100] * (width - len(s)) for s in labels])
    out = model(input_ids=input_ids, attention_mask=attention, pixel_values=enc["pixel_values"],
                image_sizes=enc["image_sizes"], labels=label_t)
    target = out.labels[:, 1:]
    logp = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)
    tok = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (target != -100)
    return tok.sum(1).tolist()


def preference_accuracy(model, processor, pairs_path: Path, batch_size: int = 32) -> float:
    """Share of held-out pairs whose chosen answer the model finds more likely than the
    rejected one (sequence log-probability)."""
    pairs = read_pairs(pairs_path)
    if not pairs:
        raise ValueError(f"{pairs_path}: no preference pairs")
    was = model.training
    model.eval()
    wins = 0
    try:
        for b in range(0, len(pairs), batch_size):
            chunk = pairs[b : b + batch_size]
            ims = [[load_image(pairs_path.parent / p["image"])] for p in chunk]
            prompts = [processor.apply_chat_template([{"role": "user", "content": p["prompt"]}]) for p in chunk]
            both = answer_logps(model, processor, prompts + prompts, ims + ims,
                                [p["chosen"] for p in chunk] + [p["rejected"] for p in chunk])
            n = len(chunk)
            wins += sum(c > r for c, r in zip(both[:n], both[n:]))
    finally:
        model.train(was)
    return wins / len(pairs)
