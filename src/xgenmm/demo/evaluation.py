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
from ..eval.harness import resolve_folder, to_model_device
from ..eval.report import write_text_atomic
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
    absent = {s.id for s in task.read(resolve_folder(world_dir, task.folder)) if s.answers[0] == "no"}
    said = said_yes_to_absent({r["id"]: r for r in _records(predictions) if not r.get("skipped")}, absent)
    return sum(said.values()) / len(said) if said else 0.0


def said_yes_to_absent(records: dict[str, dict], absent: set[str]) -> dict[str, float]:
    """{probe id: 1.0 if answered "yes" else 0.0} over the POPE records whose probe asks about
    an absent object (its id in `absent`)."""
    return {k: float(pope_answer(r["prediction"]) == "yes") for k, r in records.items() if k in absent}


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
    batch = to_model_device({"input_ids": input_ids, "attention_mask": attention, "pixel_values": enc["pixel_values"],
                             "image_sizes": enc["image_sizes"]}, model)
    out = model(**batch, labels=label_t.to(batch["input_ids"].device))
    target = out.labels[:, 1:]
    logp = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)
    tok = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (target != -100)
    return tok.sum(1).tolist()


def preference_group(pair: dict) -> str | None:
    """The group a preference pair is counted in: its `kind` (colour, shape, count, describe,
    existence, ...), and for a yes/no pair also the chosen answer ("existence_yes",
    "existence_no"), since a model that only leans towards "yes" or "no" wins the one half and
    loses the other. None for a pair without a kind."""
    kind = pair.get("kind")
    if not isinstance(kind, str) or not kind:
        return None
    chosen = str(pair.get("chosen", "")).strip().lower().rstrip(".")
    return f"{kind}_{chosen}" if chosen in ("yes", "no") else kind


def preference_records(model, processor, pairs_path: Path, batch_size: int = 32, out: Path | None = None) -> list[dict]:
    """One record per held-out pair: its index, its `preference_group` when it has one, both
    sequence log-probabilities and whether the model finds the chosen answer more likely
    than the rejected one (score 1.0). With `out`, the records are written there as JSON
    lines, atomically. `preference_scores` turns them into the scorecard's scores."""
    pairs = read_pairs(pairs_path)
    if not pairs:
        raise ValueError(f"{pairs_path}: no preference pairs")
    was = model.training
    model.eval()
    rows = []
    try:
        for b in range(0, len(pairs), batch_size):
            chunk = pairs[b : b + batch_size]
            ims = [[load_image(pairs_path.parent / p["image"])] for p in chunk]
            prompts = [processor.apply_chat_template([{"role": "user", "content": p["prompt"]}]) for p in chunk]
            both = answer_logps(model, processor, prompts + prompts, ims + ims,
                                [p["chosen"] for p in chunk] + [p["rejected"] for p in chunk])
            n = len(chunk)
            for i, (c, r) in enumerate(zip(both[:n], both[n:])):
                group = preference_group(chunk[i])
                rows.append({"id": str(b + i), **({"group": group} if group else {}), "chosen_logp": c,
                             "rejected_logp": r, "score": float(c > r)})
    finally:
        model.train(was)
    if out is not None:
        write_text_atomic(out, "".join(json.dumps(r) + "\n" for r in rows))
    return rows


def preference_scores(records: list[dict]) -> dict[str, float]:
    """{"preference_accuracy": share of pairs won, "preference_accuracy/GROUP": the same over
    the pairs of each group} from `preference_records`."""
    groups: dict[str, list[float]] = {}
    for r in records:
        if r.get("group"):
            groups.setdefault(r["group"], []).append(r["score"])
    return {"preference_accuracy": sum(r["score"] for r in records) / len(records),
            **{f"preference_accuracy/{g}": sum(v) / len(v) for g, v in sorted(groups.items())}}


# ---- standard errors of the targets' margins ---------------------------------------------------

PREFERENCE_FILE = "preference/predictions.jsonl"  # under eval/STAGE: preference_records' records


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def per_sample(eval_dir: Path, stage: str, name: str) -> dict[str, dict] | None:
    """The per-sample records of one evaluation of the run (`eval/STAGE/NAME/predictions.jsonl`,
    or the preference pairs' with name "preference"), by id, skipped samples left out; None
    when that evaluation did not run."""
    path = eval_dir / stage / (PREFERENCE_FILE if name == "preference" else f"{name}/predictions.jsonl")
    if not path.exists():
        return None
    return {r["id"]: r for r in _records(path) if not r.get("skipped")}


def _truth(world_dir: Path, task_name: str, field) -> dict:
    """{sample id: field(sample)} of a world task's held-out set; empty without it."""
    task = get_task(task_name)
    try:
        return {x.id: field(x) for x in task.read(resolve_folder(world_dir, task.folder))}
    except FileNotFoundError:
        return {}


def paired_caption_cider(after: dict[str, dict], before: dict[str, dict], world_dir: Path) -> tuple[dict, dict]:
    """Per-image CIDEr-D of two captioning evaluations over the images both scored, each
    computed over that same set of images (the document frequencies come from the
    references of the images scored; the harness writes captions unscored)."""
    from ..eval.metrics import cider

    refs = _truth(world_dir, "world_caption", lambda x: x.answers)
    ids = sorted(set(after) & set(before) & set(refs), key=str)
    if not ids:
        return {}, {}
    refs = {k: refs[k] for k in ids}
    return (cider({k: after[k]["answer"] for k in ids}, refs)[1], cider({k: before[k]["answer"] for k in ids}, refs)[1])


def target_stderrs(card, eval_dir: Path, world_dir: Path, shots: int) -> dict[str, float | None]:
    """{target key: standard error of its margin} from the run's per-sample records, for the
    checks of `demo.targets.check_targets` (the time check has none; a check whose records
    are missing gets None). A comparison of two evaluations of the same samples (few-shot
    against 0-shot, before and after a stage) takes the paired standard error of the
    per-sample differences over the samples both scored. "Every kind" takes the lowest kind's
    own standard error (the lowest of seven is picked after the fact, so its margin reads
    somewhat safer than it is)."""
    from ..eval.metrics.uncertainty import mean_stderr, paired_difference

    read: dict[tuple[str, str], dict | None] = {}

    def records(stage: str, name: str) -> dict[str, dict] | None:  # each predictions file read once
        if (stage, name) not in read:
            read[stage, name] = per_sample(eval_dir, stage, name)
        return read[stage, name]

    def scores(stage: str, name: str, field: str = "score", keep=None) -> dict[str, float] | None:
        recs = records(stage, name)
        if recs is None:
            return None
        return {k: float(r[field]) for k, r in recs.items()
                if r.get(field) is not None and (keep is None or keep(k, r))}

    def single(stage: str, name: str, **kw) -> float | None:
        s = scores(stage, name, **kw)
        return mean_stderr(list(s.values())) if s else None

    def paired(after: dict | None, before: dict | None, scale: float = 1.0) -> float | None:
        if not after or not before or not set(after) & set(before):
            return None
        se = paired_difference(after, before)[1]
        return None if se is None else se * scale

    out: dict[str, float | None] = {}
    few, zero = (records("pretrain", f"world_caption_{k}shot") for k in (shots, 0))
    out["few_shot_caption"] = paired(*paired_caption_cider(few, zero, world_dir)) if few and zero else None
    out["few_shot_vqa"] = paired(scores("pretrain", f"world_vqa_{shots}shot"), scores("pretrain", "world_vqa_0shot"))
    out["vqa"] = single("sft_single", "world_vqa")
    kinds = {k.split("/", 1)[1]: v for k, v in card.stages.get("sft_single", {}).items() if k.startswith("world_vqa/")}
    if kinds:
        worst = min(kinds, key=kinds.get)
        out["vqa_kinds"] = single("sft_single", "world_vqa", keep=lambda _k, r: r.get("group") == worst)
    out["multi"] = single("sft_multi", "world_multi")
    out["drop"] = paired(scores("sft_multi", "world_vqa"), scores("sft_single", "world_vqa"))
    out["dpo_preference"] = paired(scores("dpo", "preference"), scores("sft_multi", "preference"))
    absent = {k for k, v in _truth(world_dir, "world_pope", lambda x: x.answers[0]).items() if v == "no"}

    def absent_yes(stage: str) -> dict[str, float] | None:
        recs = records(stage, "world_pope")
        return None if recs is None else said_yes_to_absent(recs, absent)

    out["dpo_hallucination"] = paired(absent_yes("dpo"), absent_yes("sft_multi"))
    unsafe = {k for k, v in _truth(world_dir, "world_safety", lambda x: bool(x.meta.get("unsafe"))).items() if v}
    out["refused"] = single("safety", "world_safety", field="refused", keep=lambda k, _r: k in unsafe)
    before = card.stages.get("dpo", {}).get("world_safety/safe_answer_accuracy")
    if before:
        out["ordinary_kept"] = paired(scores("safety", "world_safety", field="answer_correct"),
                                      scores("dpo", "world_safety", field="answer_correct"), 1.0 / before)
    return out
