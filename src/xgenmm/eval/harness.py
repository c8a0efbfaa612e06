"""The evaluation loop: read a task's samples, build prompts (instruct chat, or base-model
few-shot), generate in batches (or score multiple-choice options by likelihood), extract and
score answers, and write per-sample predictions (JSONL, resumable), results JSON and a
markdown table.

    from xgenmm.eval import evaluate
    result = evaluate(model, processor, "world_vqa", "world/", out_dir="runs/eval")
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import time
from collections import Counter
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..model.image_processing import ImageLoadError, load_image
from ..model.template import END_OF_CHUNK_TOKEN, IMAGE_TOKEN
from .report import write_json_atomic
from .scoring import MAIN_METRIC, aggregate, answer_letter, base_postprocess, score_sample
from .tasks import Sample, Task, get_task
from .tasks.base import DEMO_SELECTIONS, MC_SCORINGS, letters

log = logging.getLogger(__name__)


def resolve_folder(data: str | Path, folder: str) -> Path:
    """The task's data folder: DATA/folder, DATA/eval/folder (a synthetic world's root), or
    DATA itself when it is that folder."""
    data = Path(data)
    for cand in (data / folder, data / "eval" / folder):
        if cand.is_dir():
            return cand
    if data.is_dir():
        return data
    raise FileNotFoundError(f"{data}: no data folder for this task (looked for {data / folder} and {data / 'eval' / folder})")


def run_name(task: Task, shots: int | None) -> str:
    return task.name if shots is None else f"{task.name}_{shots}shot"


def _load_done(path: Path) -> dict[str, dict]:
    """Records of a previous partial run. A line cut off by an interrupted write is dropped
    and the file rewritten without it (and a last line without its newline given one), so
    that appending continues cleanly."""
    if not path.exists():
        return {}
    done, good, dropped = {}, [], 0
    text = path.read_text(encoding="utf-8")
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if isinstance(rec, dict) and "id" in rec:
            done[str(rec["id"])] = rec
            good.append(line)
    if dropped or (text and not text.endswith("\n")):  # a complete last line that lost its newline too
        if dropped:
            log.warning("%s: dropped %d unreadable line(s) of an interrupted run", path, dropped)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text("".join(g + "\n" for g in good), encoding="utf-8")
        os.replace(tmp, path)
    return done


SETTINGS_FILE = "settings.json"  # beside predictions.jsonl: what its predictions depend on beyond the folder's name


def _check_settings(path: Path, settings: dict) -> None:
    """Refuse to resume predictions made with other settings (the demonstrations' seed, the
    decoding budget, how options are scored) than this run's: they would be reported under
    this run's settings. Predictions without the file (an older run) are resumed as before."""
    if not path.is_file():
        return
    try:
        before = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable ({e}); delete it, or the folder, to evaluate again") from e
    changed = {k: (before.get(k), v) for k, v in settings.items() if k in before and before[k] != v}
    if changed:
        what = ", ".join(f"{k} {a!r} there, {b!r} now" for k, (a, b) in changed.items())
        raise ValueError(f"{path.parent}: its predictions were made with other settings ({what}); give another "
                         f"output folder, or delete that one to evaluate again")


def _load_images(sample: Sample) -> tuple[list | None, str | None]:
    try:
        return [load_image(src, name=f"sample {sample.id} image {j} ({src if isinstance(src, Path) else 'inline'})")
                for j, src in enumerate(sample.images)], None
    except FileNotFoundError:
        return None, "missing_image"
    except ImageLoadError:
        return None, "unreadable_image"


def _user_text(task: Task, sample: Sample, n_images: int) -> str:
    text = task.instruct_prompt(sample)
    if IMAGE_TOKEN in text:  # the benchmark places its images itself (Mantis-Eval)
        return text
    return (IMAGE_TOKEN + "\n") * n_images + text


def _words(text: str | None) -> frozenset[str]:
    return frozenset(re.findall(r"\w+", (text or "").lower()))


class _Demonstrations:
    """Few-shot demonstrations from the task's train split, drawn per sample with a seed
    (so a resumed or re-batched run draws the same ones); decoded images are cached.

    `selection="random"` draws them at random (Flamingo's and OpenFlamingo's default);
    `"similar"` takes the demonstrations whose question shares the most words with the
    sample's (Jaccard over lower-cased words; ties in the seeded random order), the text
    side of retrieval-based selection (OpenFlamingo's RICES ranks by image embedding). Only
    the question is compared, never an answer. Tasks without questions (captioning) draw at
    random either way."""

    def __init__(self, task: Task, folder: Path, seed: int, selection: str = "random"):
        if selection not in DEMO_SELECTIONS:
            raise ValueError(f"demonstration selection must be one of {DEMO_SELECTIONS}, got {selection!r}")
        train = folder.parent / f"{folder.name}_train"
        if not train.is_dir():
            raise FileNotFoundError(f"{task.name}: few-shot needs the train split at {train} (same layout as {folder})")
        self.pool = task.read(train)
        if not self.pool:
            raise ValueError(f"{train}: no demonstrations")
        self.seed, self.selection, self.cache = seed, selection, {}
        self.pool_words = [_words(d.question) for d in self.pool]

    def images(self, demo: Sample) -> list | None:
        if demo.id not in self.cache:
            self.cache[demo.id], _ = _load_images(demo)
        return self.cache[demo.id]

    def draw(self, sample: Sample, k: int, with_images: bool = True) -> list[tuple[Sample, list]]:
        """`k` demonstrations for `sample` with their decoded images (a demonstration whose image
        cannot be read is passed over); `with_images=False` leaves the images unread (text-only
        demonstrations) and gives [] for each."""
        rng = random.Random(f"{self.seed}/{sample.id}")
        order = rng.sample(range(len(self.pool)), len(self.pool))
        query = _words(sample.question)
        if self.selection == "similar" and query:
            def jaccard(i: int) -> float:
                return len(query & self.pool_words[i]) / len(query | self.pool_words[i])
            order.sort(key=jaccard, reverse=True)  # stable: ties keep the random order
        chosen = []
        for i in order:
            if len(chosen) == k:
                break
            demo = self.pool[i]
            if demo.id == sample.id and demo.question == sample.question:
                continue
            ims = self.images(demo) if with_images else []
            if ims is not None:
                chosen.append((demo, ims))
        if len(chosen) < k:  # a k-shot result must hold k demonstrations (OpenFlamingo's draw fails too)
            raise ValueError(f"sample {sample.id}: {k} demonstrations asked, but the train split has only "
                             f"{len(chosen)} usable ones (other samples, their images readable) of {len(self.pool)}")
        return chosen


def _prompt(task: Task, proc, sample: Sample, images: list, shots: int | None,
            demos: _Demonstrations | None, text_demos: int = 0) -> tuple[str, list]:
    if shots is None:
        content = _user_text(task, sample, len(images))
        return proc.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True), images
    # Base convention (reference section 4): <image>{instruction}{answer}<|endofchunk|> per
    # demonstration, then the query; the processor expands each <image> into placeholders.
    # A 0-shot prompt with `text_demos` leads with that many demonstrations' text, their
    # images removed (OpenFlamingo's zero-shot evaluation, with 2). Nothing between
    # demonstrations, as the reference layout has it (OpenFlamingo's adds a newline).
    text, all_images = "", []
    drawn = demos.draw(sample, shots) if shots else demos.draw(sample, text_demos, with_images=False) if text_demos else []
    for demo, demo_images in drawn:
        text += IMAGE_TOKEN * len(demo_images) + task.base_prompt(demo) + task.base_answer(demo) + END_OF_CHUNK_TOKEN
        all_images += demo_images
    return text + IMAGE_TOKEN * len(images) + task.base_prompt(sample), all_images + images


def to_model_device(batch: dict, model) -> dict:
    """A processor batch's tensors on the model's device, the images in its vision encoder's dtype."""
    param = next(model.parameters())
    vision_dtype = next(model.vision_encoder.parameters()).dtype if hasattr(model, "vision_encoder") else param.dtype
    return {
        "input_ids": batch["input_ids"].to(param.device),
        "attention_mask": batch["attention_mask"].to(param.device),
        "pixel_values": [p.to(param.device, vision_dtype) for p in batch["pixel_values"]],
        "image_sizes": batch["image_sizes"],
    }


@torch.no_grad()
def _generate(model, proc, prompts: list[str], images: list[list], max_new_tokens: int, base: bool,
              num_beams: int = 1, length_penalty: float = 1.0) -> list[str]:
    batch = to_model_device(proc(text=prompts, images=images, padding_side="left", convention="base" if base else "instruct"), model)
    eos = list(model.config.tokens.eos_token_ids)
    if base:  # a base model ends an answer with <|endofchunk|>
        eos = sorted({*eos, proc.endofchunk_token_id, proc.end_token_id})
    out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos, num_beams=num_beams,
                         length_penalty=length_penalty)
    return proc.batch_decode(out, skip_special_tokens=True)


@torch.no_grad()
def _option_choice(model, proc, prompts: list[str], images: list[list], options: list[list[str]], batch_size: int,
                   base: bool) -> list[str]:
    """The option whose text is most likely after the prompt (sum of token log-probs)."""
    rows = [(i, o) for i, opts in enumerate(options) for o in range(len(opts))]
    scores: dict[tuple[int, int], float] = {}
    pad = proc.pad_token_id
    for start in range(0, len(rows), max(1, batch_size)):
        chunk = rows[start : start + batch_size]
        enc = proc(text=[prompts[i] for i, _ in chunk], images=[images[i] for i, _ in chunk], padding_side="right",
                   convention="base" if base else "instruct")
        seqs, labs = [], []
        for r, (i, o) in enumerate(chunk):
            ids = enc["input_ids"][r][enc["attention_mask"][r].bool()].tolist()
            cont = proc.tokenizer(options[i][o], add_special_tokens=False)["input_ids"]
            seqs.append(ids + cont)
            labs.append([-100] * len(ids) + cont)
        width = max(map(len, seqs))
        input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
        attention = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        labels = torch.tensor([s + [-100] * (width - len(s)) for s in labs])
        batch = to_model_device({"input_ids": input_ids, "attention_mask": attention, "pixel_values": enc["pixel_values"],
                            "image_sizes": enc["image_sizes"]}, model)
        out = model(**batch, labels=labels.to(batch["input_ids"].device))
        target = out.labels[:, 1:]
        logp = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)
        tok = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (target != -100)
        for r, key in enumerate(chunk):
            scores[key] = float(tok[r].sum())
    return [letters(len(opts))[max(range(len(opts)), key=lambda o: scores[(i, o)])] for i, opts in enumerate(options)]


def _by_likelihood(task: Task, samples: list[Sample], scoring: str) -> bool:
    """Whether these samples are all answered by option likelihood (nothing decoded): multiple
    choice, or multi-image questions that all have options, scored "likelihood". The harness
    asks it of each sample alone, so that batching never changes how a question is scored."""
    is_mc = task.kind == "mc" or (task.kind == "multi" and all(s.options for s in samples))
    return is_mc and scoring == "likelihood"


def evaluate(model, processor, task: str | Task, data_path: str | Path, shots: int | None = None, batch_size: int = 8,
             limit: int | None = None, out_dir: str | Path | None = None, seed: int = 0, mc_scoring: str | None = None,
             max_new_tokens: int | None = None, progress: bool = True, demos: str = "random",
             text_demos: int = 0, num_beams: int = 1, length_penalty: float = 1.0) -> dict:
    """Evaluate `model` on one task and return its results: {"task", "shots", "metrics",
    "samples", "scored", "skipped": {reason: count}, "samples_per_s", ...}.

    shots=None: instruct prompts (the chat template, `<image>` tags). shots=k (0, 4, 8, ...):
    base-model prompts with k demonstrations drawn with `seed` from `{folder}_train`, at random
    or (`demos="similar"`) those whose question is most like the sample's. shots=0 with
    `text_demos=n`: the prompt leads with n demonstrations' text and no image, as
    OpenFlamingo's zero-shot evaluation does (n=2), to show a base model the answer's form.
    Generation is greedy; `num_beams` > 1 is beam search with `length_penalty` (Hugging Face's
    meaning; OpenFlamingo's evaluation decodes with 3 beams, length penalty 0, at most 5 new
    tokens for VQA and 20 for captions).
    With `out_dir`, predictions go to out_dir/<task>[_<k>shot][_text<n>][_similar][_beams<b>_lp<p>]/predictions.jsonl (an
    existing file is resumed: samples already there are not run again) beside results.json.
    Unreadable images skip their sample (counted in "skipped").
    """
    task = get_task(task) if isinstance(task, str) else task
    if shots is not None and not task.few_shot:
        raise ValueError(f"task {task.name} has no base-model few-shot prompt; run it without shots")
    scoring = mc_scoring or task.mc_scoring
    if scoring not in MC_SCORINGS:
        raise ValueError(f"mc_scoring must be one of {MC_SCORINGS}, got {scoring!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be a positive number of samples, got {limit!r}")  # [:-1] would drop one
    folder = resolve_folder(data_path, task.folder)
    samples = task.read(folder)
    if limit is not None:
        samples = samples[:limit]
    by_id = {s.id: s for s in samples}
    if len(by_id) != len(samples):
        dup = next(k for k, v in Counter(s.id for s in samples).items() if v > 1)
        raise ValueError(f"{folder}: sample id {dup!r} appears more than once")
    if demos not in DEMO_SELECTIONS:
        raise ValueError(f"demos must be one of {DEMO_SELECTIONS}, got {demos!r}")
    if not isinstance(text_demos, int) or text_demos < 0:
        raise ValueError(f"text_demos must be a non-negative integer, got {text_demos!r}")
    if text_demos and shots != 0:
        raise ValueError(f"text_demos leads 0-shot prompts only (shots=0), got shots={shots!r}")
    if not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(f"num_beams must be a positive integer, got {num_beams!r}")
    if num_beams > 1 and _by_likelihood(task, samples, scoring):
        log.info("%s: options scored by likelihood, nothing decoded: num_beams does not apply", task.name)
        num_beams = 1
    drawing = bool(shots or text_demos)
    pool = _Demonstrations(task, folder, seed, demos) if drawing else None
    name = run_name(task, shots) + (f"_text{text_demos}" if text_demos else "") + ("_similar" if drawing and demos == "similar" else "")
    name += f"_beams{num_beams}_lp{length_penalty:g}" if num_beams > 1 else ""  # a resumed run decodes as it began
    pred_path = Path(out_dir) / name / "predictions.jsonl" if out_dir is not None else None
    settings = {"seed": seed if drawing else None, "max_new_tokens": max_new_tokens or task.max_new_tokens,
                "mc_scoring": scoring if task.kind in ("mc", "multi") else None}
    if pred_path:
        _check_settings(pred_path.parent / SETTINGS_FILE, settings)
    done = _load_done(pred_path) if pred_path else {}
    done = {k: v for k, v in done.items() if k in by_id}
    todo = [s for s in samples if s.id not in done]
    records = list(done.values())
    if pred_path:
        pred_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(pred_path.parent / SETTINGS_FILE, settings)
    writer = pred_path.open("a", encoding="utf-8") if pred_path else None
    was_training = model.training
    model.eval()
    start, ran = time.perf_counter(), 0
    bar = tqdm(total=len(samples), initial=len(samples) - len(todo), desc=name, disable=not progress, unit="sample")
    try:
        for b in range(0, len(todo), batch_size):
            batch, prompts, images, new = [], [], [], []
            for s in todo[b : b + batch_size]:
                ims, reason = _load_images(s)
                if ims is None:
                    new.append({"id": s.id, "skipped": reason})
                    continue
                text, all_ims = _prompt(task, processor, s, ims, shots, pool, text_demos)
                batch.append(s), prompts.append(text), images.append(all_ims)
            if batch:
                # Each sample is scored as it would be alone: by its options' likelihood, or by
                # generation (a multi-image benchmark mixes both kinds of question).
                texts, choices = [""] * len(batch), [None] * len(batch)
                lik = [i for i, s in enumerate(batch) if _by_likelihood(task, [s], scoring)]
                gen = [i for i in range(len(batch)) if i not in lik]
                if lik:
                    picked = _option_choice(model, processor, [prompts[i] for i in lik], [images[i] for i in lik],
                                            [batch[i].options for i in lik], batch_size, shots is not None)
                    for i, c in zip(lik, picked):
                        choices[i], texts[i] = c, batch[i].options[letters(len(batch[i].options)).index(c)]
                if gen:
                    decoded = _generate(model, processor, [prompts[i] for i in gen], [images[i] for i in gen],
                                        max_new_tokens or task.max_new_tokens, shots is not None, num_beams, length_penalty)
                    for i, text in zip(gen, decoded):
                        box = batch[i].meta.get("question_type") in task.box_question_types
                        texts[i] = text if shots is None else base_postprocess(task.kind, text, box)
                for s, text, choice in zip(batch, texts, choices):
                    new.append(score_sample(task, s, text, choice))
                ran += len(batch)
            for rec in new:
                if writer:
                    writer.write(json.dumps(rec, ensure_ascii=False) + "\n")
            if writer:
                writer.flush()
            records += new
            bar.update(len(new))
    finally:
        bar.close()
        if writer:
            writer.close()
        model.train(was_training)
    elapsed = time.perf_counter() - start
    metrics = aggregate(task, records, by_id)
    skipped = Counter(r["skipped"] for r in records if r.get("skipped"))
    result = {
        "task": task.name,
        "kind": task.kind,
        "shots": shots,
        "style": "instruct" if shots is None else "base",
        "mc_scoring": scoring if task.kind in ("mc", "multi") else None,
        "main_metric": MAIN_METRIC[task.kind],
        "metrics": metrics,
        "samples": len(samples),
        "scored": sum(1 for r in records if not r.get("skipped")),
        "skipped": dict(skipped),
        "resumed": len(done),
        "seconds": round(elapsed, 3),
        "samples_per_s": round(ran / elapsed, 3) if ran and elapsed > 0 else None,
        "data": str(folder),
        "seed": seed,
        "demos": demos if drawing else None,
        "text_demos": text_demos if shots == 0 else None,
        "num_beams": num_beams,
        "length_penalty": length_penalty if num_beams > 1 else None,
    }
    if pred_path:
        result["predictions"] = str(pred_path)
        write_json_atomic(pred_path.parent / "results.json", result)
    return result


__all__ = ["evaluate", "resolve_folder", "run_name", "answer_letter"]
