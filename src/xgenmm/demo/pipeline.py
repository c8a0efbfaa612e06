"""`run_demo`: the whole recipe on the synthetic world, one stage after another, with an
evaluation on the held-out sets after each stage and a scorecard at the end.

    world -> tokenizer -> vision tower (SigLIP sigmoid loss) -> pretraining -> single-image SFT
    -> multi-image SFT -> DPO (LoRA) -> safety tuning (LoRA)

Every training stage after the vision tower runs through the trainer (`run_stage`) from a
config in configs/demo/; the resolved config is kept as RUN/configs/STAGE.yaml, so
`xgenmm train RUN/configs/sft_single.yaml` reruns that stage by hand."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import yaml

from ..eval.report import write_text_atomic
from ..model import XGenMM
from ..synth.generate import MANIFEST_VERSION
from ..model.image_processing import XGenMMImageProcessor
from ..model.processor import XGenMMProcessor
from .assemble import caption_images, initial_model, place_image_positions, save_initial, whiten_projection, whitening_images
from .evaluation import (PREFERENCE_FILE, PREFERENCE_STAGES, evaluate_stage, preference_records, preference_scores, read_pairs,
                         target_stderrs)
from .presets import STAGES, DemoPreset, get_preset, model_overrides
from .scorecard import Scorecard, plot_losses, read_trainer_losses, write_scorecard
from .targets import TargetCheck, check_targets, clock, tally, targets_markdown
from .vision_pretrain import build_siglip, copy_vision_tower, pretrain_vision

log = logging.getLogger("xgenmm.demo")

TRAINER_STAGES = ("pretrain", "sft_single", "sft_multi", "dpo", "safety")
TITLES = {
    "world": "generate the synthetic world",
    "tokenizer": "train the world's tokenizer",
    "vision": "pretrain the vision tower (SigLIP sigmoid loss), copy it into the model, freeze it",
    "pretrain": "pretraining: captions + interleaved documents (base convention)",
    "sft_single": "single-image instruction tuning",
    "sft_multi": "multi-image instruction tuning",
    "dpo": "DPO with LoRA",
    "safety": "safety tuning with LoRA",
}
VISION_HELD_OUT = 200  # caption items (images, or tiles) kept out of vision pretraining to measure it


def config_dir() -> Path:
    """configs/demo/ of the source tree (the stage YAMLs the demo runs)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "configs" / "demo"
        if (cand / "sft_single.yaml").is_file():
            return cand
    raise FileNotFoundError(f"configs/demo/ not found above {here}; run the demo from a source checkout")


def _say(step: int, total: int, key: str, elapsed: float | None = None, budget: float | None = None) -> None:
    """A stage's heading; with `elapsed` and `budget` (seconds), the run's wall time so far."""
    so_far = f" ({clock(elapsed)} elapsed, budget {budget / 60:g} min)" if elapsed is not None and budget is not None else ""
    print(f"\n=== [{step}/{total}] {TITLES[key]}{so_far} ===", flush=True)


def scoped_targets(card: Scorecard, p: DemoPreset, wall: float, complete: bool,
                   stderrs: dict[str, float | None] | None = None) -> tuple[list[TargetCheck], str, str]:
    """The run's target checks, their scope ("recipe": a full-preset run of every stage on the
    easy world; "smoke_test": the quick preset, held to its time budget only; "comparison": a
    run of some stages, or on another world, checked against the recipe's targets for
    comparison only) and a sentence saying so. `stderrs` ({key: standard error}, from
    `target_stderrs`) fills in each check's margin's standard error."""
    checks = check_targets(card, wall if complete else None, p.budget_s, shots=p.few_shot)
    if stderrs:
        checks = [replace(c, stderr=stderrs.get(c.key)) if c.margin is not None else c for c in checks]
    if not p.all_targets:
        checks = [c for c in checks if c.key == "time"]
        return checks, "smoke_test", f"The `{p.name}` preset is the smoke test: held to its time budget only (README)."
    if p.world_preset == "easy" and complete:
        return checks, "recipe", "Targets set for the full preset on the easy world (README)."
    run = f"the {p.world_preset} world" if p.world_preset != "easy" else "some stages only"
    return checks, "comparison", (f"Targets set for every stage of the full preset on the easy world (README); this run "
                                  f"({run}) is checked against them for comparison only.")


def targets_section(card: Scorecard, p: DemoPreset, wall: float, complete: bool,
                    stderrs: dict[str, float | None] | None = None) -> list[str]:
    """The scorecard's Targets section: every target for a full-preset run (the time budget only
    for the smoke test; no time check for a run of some stages only)."""
    checks, _, sentence = scoped_targets(card, p, wall, complete, stderrs)
    return targets_markdown(checks) + ["", sentence]


def targets_record(card: Scorecard, p: DemoPreset, wall: float, complete: bool, seed: int,
                   stderrs: dict[str, float | None] | None = None) -> dict:
    """RUN/targets.json: the Targets section as data (scorecard.json keeps its documented
    shape), so that runs can be compared and tracked by a program."""
    checks, scope, sentence = scoped_targets(card, p, wall, complete, stderrs)
    met, checked = tally(checks)
    return {"preset": p.name, "world": p.world_preset, "seed": seed, "wall_seconds": round(wall, 1),
            "budget_seconds": p.budget_s, "scope": scope, "note": sentence, "met": met, "checked": checked,
            "targets": [{k: float(f"{v:.6g}") if k in ("margin", "stderr") and v is not None else v
                         for k, v in asdict(c).items()} for c in checks]}


def existing_world(world: Path, seed: int, preset: DemoPreset) -> dict | None:
    """The manifest of a complete world in `world` written by this manifest version with the
    same seed, difficulty and size (generation is deterministic: same arguments, same bytes),
    else None."""
    path = world / "manifest.json"
    if not path.is_file():
        return None
    try:
        man = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    size = preset.world_size if isinstance(preset.world_size, str) else asdict(preset.world_size)
    if (man.get("version"), man.get("seed"), man.get("preset"), man.get("size")) != (MANIFEST_VERSION, seed, preset.world_preset, size):
        return None
    files = [f["path"] if isinstance(f, dict) else f for f in man.get("files", [])]
    if not files or not all((world / f).is_file() for f in files):
        return None
    return man


def write_stage_data(run: Path, world: Path, preset: DemoPreset, seed: int) -> None:
    """RUN/data/: the mixtures the stage configs name, and the DPO pairs split into a training
    part and a held-out part (the world writes no held-out preference set)."""
    man = json.loads((world / "manifest.json").read_text())
    data = run / "data"
    rel = lambda p: f"../world/{p}"  # noqa: E731  (mixture paths are relative to the YAML's folder)
    write_text_atomic(data / "pretrain_mixture.yaml", yaml.safe_dump({
        "seed": seed,
        "sources": [{"path": [rel(p) for p in man["paths"]["captions"]], "weight": 0.75},
                    {"path": [rel(p) for p in man["paths"]["interleaved"]], "weight": 0.25}],
    }, sort_keys=False))
    n_multi = man["datasets"]["train"]["sft_multi"]["samples"]
    write_text_atomic(data / "sft_multi_mixture.yaml", yaml.safe_dump({
        "seed": seed, "replacement": False,
        "data_path": {rel(man["paths"]["sft_multi"]): n_multi, rel(man["paths"]["sft_single_conversations"]): preset.mix_single},
    }, sort_keys=False))
    n_safety = man["datasets"]["train"]["safety"]["samples"]
    write_text_atomic(data / "safety_mixture.yaml", yaml.safe_dump({
        "seed": seed, "replacement": False,
        "data_path": {rel(man["paths"]["safety"]): n_safety, rel(man["paths"]["sft_single"]): preset.mix_sft_into_safety},
    }, sort_keys=False))
    pairs_path = world / man["paths"]["dpo"]
    pairs = read_pairs(pairs_path)
    for p in pairs:  # image paths are relative to the pairs file; the split files live elsewhere
        p["image"] = str((pairs_path.parent / p["image"]).resolve())
    random.Random(f"dpo-split/{seed}").shuffle(pairs)
    k = min(preset.dpo_heldout, len(pairs) // 4)
    s = min(preset.dpo_select, (len(pairs) - k) // 4)
    splits = [("dpo_heldout.jsonl", pairs[:k]), ("dpo_train.jsonl", pairs[k + s:])]
    if s:  # DPO's final step is chosen on these (SELECT_PAIRS)
        splits.append(("dpo_select.jsonl", pairs[k:k + s]))
    for name, rows in splits:
        write_text_atomic(data / name, "".join(json.dumps(r) + "\n" for r in rows))


def stage_config(stage: str, run: Path, preset: DemoPreset, seed: int, progress: bool = True):
    """The stage's TrainConfig: configs/demo/STAGE.yaml with the preset's budget, paths taken
    from the run directory; its resolved copy is written to RUN/configs/STAGE.yaml."""
    from ..train.config import load_config

    path = config_dir() / f"{stage}.yaml"
    steps = preset.steps[stage]
    warmup = min(int((yaml.safe_load(path.read_text()).get("schedule") or {}).get("warmup_steps", 0)), steps)
    overrides = [f"seed={seed}", f"schedule.max_steps={steps}", f"schedule.warmup_steps={warmup}",
                 f"logging.progress={str(progress).lower()}"]
    if stage in preset.batch:
        overrides.append(f"data.batch.batch_size={preset.batch[stage]}")
    if stage == "dpo" and preset.dpo_select:
        overrides.append(f"dpo.select_source=./{SELECT_PAIRS}")
    overrides += list(preset.trainer_overrides.get(stage, []))
    cfg = load_config(path, overrides, check_paths=False, base_dir=run)
    if not Path(cfg.run_dir).resolve().is_relative_to(run):
        raise ValueError(f"{path}: run_dir {cfg.run_dir} is not inside the demo's run directory {run}")
    write_text_atomic(run / "configs" / f"{stage}.yaml", cfg.to_yaml())
    return cfg


def start_multi_image(run: Path, world: Path, preset: DemoPreset) -> Path:
    """The model multi-image SFT starts from (configs/demo/sft_multi.yaml's checkpoint,
    RUN/stages/sft_multi_init): the single-image model with its image position embeddings set
    (`place_image_positions`), or as it is when it has none."""
    source, out = run / "stages" / "sft_single" / "final", run / "stages" / "sft_multi_init"
    model, processor = XGenMM.from_pretrained(source), XGenMMProcessor.from_pretrained(source)
    if model.vision_tokenizer.image_pos is not None:
        pixels, sizes = whitening_images(world, processor.image_processor, max(preset.whiten_images, 100))
        length = place_image_positions(model, pixels, sizes)
        print(f"image position embeddings set for images 2 to {model.vision_tokenizer.image_pos.shape[0] + 1} "
              f"(length {length:.2f}, an average image token's)", flush=True)
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out, processor=processor)
    return out


MINED_PAIRS = "data/dpo_mined.jsonl"  # configs/demo/dpo.yaml's data.source
SELECT_PAIRS = "data/dpo_select.jsonl"  # with preset.dpo_select: DPO's dpo.select_source


def mine_dpo_pairs(run: Path, cfg, p: DemoPreset, seed: int, progress: bool = True):
    """RUN/data/dpo_mined.jsonl, the DPO stage's data (`cfg`, the stage's config, reads it):
    the training pairs that the model DPO starts from (the multi-image SFT model) ranks wrong
    or by less than `p.dpo_mine_margin` nats, encoded as the stage encodes them
    (`train/mine_pairs.py`). Returns (config, note). Should the model rank every pair right by
    more, DPO trains on all of them instead: the config returned reads RUN/data/dpo_train.jsonl
    (and RUN/configs/dpo.yaml says so) and the note, for the scorecard, tells."""
    from ..train.mine_pairs import MinePairsConfig, NoPairsKept, mine_pairs

    mining = MinePairsConfig(model=cfg.model.checkpoint, source=str(run / "data" / "dpo_train.jsonl"),
                             out=str(run / MINED_PAIRS), max_margin=p.dpo_mine_margin,
                             max_length=cfg.data.encode.max_length,
                             device=None if cfg.runtime.device == "auto" else cfg.runtime.device)
    try:
        counts = mine_pairs(mining, progress=progress)
    except NoPairsKept as e:
        log.warning("%s; DPO trains on every training pair", e)
        every = replace(p, trainer_overrides={**p.trainer_overrides,
                                              "dpo": [*p.trainer_overrides.get("dpo", []), "data.source=./data/dpo_train.jsonl"]})
        return stage_config("dpo", run, every, seed, progress), (
            f"DPO trained on every training pair: none had a margin below {p.dpo_mine_margin} nats under the multi-image model.")
    print(f"DPO pairs: {counts['kept']} of {counts['scored']} training pairs kept, those the model ranks wrong or by "
          f"less than {p.dpo_mine_margin} nats ({counts['scored'] - counts['ranked_right']} wrong)", flush=True)
    return cfg, None


def worked_example(model, processor, world: Path, seed: int) -> dict:
    """One held-out VQA question answered by the final model."""
    from ..eval import get_task
    from ..eval.harness import resolve_folder, to_model_device
    from ..model.image_processing import load_image

    task = get_task("world_vqa")
    samples = task.read(resolve_folder(world, task.folder))
    s = random.Random(f"example/{seed}").choice([x for x in samples if x.meta.get("question_type") == "reading"] or samples)
    prompt = processor.apply_chat_template([{"role": "user", "content": "<image>\n" + s.question}])
    enc = to_model_device(processor(text=[prompt], images=[[load_image(s.images[0])]], padding_side="left"), model)
    model.eval()
    out = model.generate(**enc, max_new_tokens=16, eos_token_id=list(model.config.tokens.eos_token_ids))
    answer = processor.batch_decode(out, skip_special_tokens=True)[0].strip()
    return {"image": str(s.images[0]), "question": s.question, "answer": answer, "reference": s.answers[0]}


def clear_stage(run_dir: Path, eval_dir: Path) -> None:
    """Remove a stage's earlier trainer run and evaluation outputs before it runs again: a
    fresh run of the stage, never a resume of an old one, and no evaluation resumed from the
    predictions of an earlier model (the harness resumes from a task's predictions file)."""
    for d in (run_dir, eval_dir):
        if d.exists():
            shutil.rmtree(d)


DEVICES = ("cpu", "cuda", "auto")


def demo_device(device: str) -> str:
    """The device every stage of the demo trains and evaluates on: cpu, cuda, or auto (cuda
    when torch sees one, else cpu). The presets' budgets and the README's numbers are for cpu."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda: torch sees no CUDA device (torch.cuda.is_available() is False; a CPU "
                         "build of torch, or no driver); run with device cpu")
    return device


def run_demo(preset: str | DemoPreset = "full", out: str | Path = "runs/demo", seed: int = 0, progress: bool = True,
             stages: tuple[str, ...] = STAGES, world_preset: str | None = None, threads: int = 0,
             device: str = "cpu") -> Scorecard:
    """Run the demo into `out`; returns the scorecard (also written to out/scorecard.*).
    `world_preset` replaces the preset's world difficulty (easy, standard, hard); `threads` > 0
    sets torch's intra-op threads here and in every stage config (runtime.threads); `device`
    (`demo_device`) is where every stage trains and evaluates (runtime.device)."""
    from ..synth import generate_world
    from ..synth.corpus import build_world_tokenizer
    from ..train.loop import run_stage

    p = get_preset(preset) if isinstance(preset, str) else preset
    if world_preset is not None:
        p = replace(p, world_preset=world_preset)
    device = demo_device(device)  # before any work: a missing GPU fails here, not after the world is written
    if not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be 0 (torch's default) or a positive integer, got {threads!r}")
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"the run directory {out} is a file; give a directory (new or an earlier run's)")
    runtime = [f"runtime.device={device}"] + ([f"runtime.threads={threads}"] if threads else [])
    if threads:
        torch.set_num_threads(threads)
    p = replace(p, trainer_overrides={s: [*runtime, *p.trainer_overrides.get(s, [])] for s in TRAINER_STAGES})
    run = Path(out).resolve()
    run.mkdir(parents=True, exist_ok=True)
    world = run / "world"
    card = Scorecard()
    total = 2 + len(stages)
    t_all = time.perf_counter()

    _say(1, total, "world")
    t = time.perf_counter()
    manifest = existing_world(world, seed, p)
    if manifest is None:
        # Two processes where there are two cores: the same bytes as one (generate_world).
        manifest = generate_world(world, seed=seed, preset=p.world_preset, size=p.world_size, progress=progress,
                                  workers=min(2, threads or os.cpu_count() or 1))
    else:
        print(f"reusing the world already in {world} (same generator version, seed, preset and size)", flush=True)
    card.chance = dict(manifest["chance"])
    card.chance.update({"world_pope/hallucination_rate": 0.5, "world_pope/accuracy": 0.5, "preference_accuracy": 0.5,
                        "vision/pair_accuracy": 0.5, "vision/hard_negative_accuracy": 0.5,
                        "world_safety/refusal_rate_unsafe": 0.5, "world_safety/safe_answer_accuracy": card.chance["world_vqa"],
                        "world_vqa_0shot": card.chance["world_vqa"], "world_vqa_4shot": card.chance["world_vqa"]})
    write_stage_data(run, world, p, seed)
    card.seconds["world"] = round(time.perf_counter() - t, 1)

    _say(2, total, "tokenizer", time.perf_counter() - t_all, p.budget_s)
    t = time.perf_counter()
    tokenizer = build_world_tokenizer(world, run / "tokenizer", vocab_size=p.tokenizer_vocab)
    card.seconds["tokenizer"] = round(time.perf_counter() - t, 1)
    overrides = model_overrides(**p.model_shape)
    curves: dict[str, list] = {}

    model = processor = None
    run_notes: list[str] = []  # the scorecard's notes on how a stage ran, when it ran otherwise than configured
    for i, stage in enumerate(stages, 3):
        _say(i, total, stage, time.perf_counter() - t_all, p.budget_s)
        t = time.perf_counter()
        if stage == "vision":
            img = overrides["image"]
            image_processor = XGenMMImageProcessor(img["image_size"], img["mode"], img["grids"])
            items = caption_images(world, image_processor)
            held, train = items[:min(VISION_HELD_OUT, len(items) // 5)], items[min(VISION_HELD_OUT, len(items) // 5):]
            torch.manual_seed(seed)
            siglip = build_siglip(overrides["vision"]["hf_config"], tokenizer, p.vision)
            res = pretrain_vision(siglip, train, held, manifest["world"], tokenizer, p.vision, progress=progress,
                                  device=device)
            curves["vision (sigmoid loss)"] = list(enumerate(res.losses, 1))
            model = initial_model(tokenizer, overrides, seed)
            copy_vision_tower(siglip, model)
            siglip.to("cpu")  # its tower now lives in the model; free the device's memory
            if p.whiten_images:
                pixels, sizes = whitening_images(world, image_processor, p.whiten_images)
                white = whiten_projection(model, pixels, sizes, seed=seed)
                print(f"resampler projection whitened on {len(pixels)} images (the top 4 of its input's directions "
                      f"held {white['top4_variance_share']:.0%} of the variance)", flush=True)
            save_initial(model, tokenizer, run / "stages" / "init", p.system_prompt)
            print(f"vision tower: {res.steps} steps in {res.seconds:.0f} s; held-out pair accuracy "
                  f"{res.pair_accuracy:.3f}, true clause over its hard negatives {res.hard_negative_accuracy:.3f}", flush=True)
            card.add("vision", {"vision/pair_accuracy": res.pair_accuracy,
                                "vision/hard_negative_accuracy": res.hard_negative_accuracy}, time.perf_counter() - t)
            continue
        if stage == "sft_multi":
            start_multi_image(run, world, p)
        cfg = stage_config(stage, run, p, seed, progress)
        if stage == "dpo":
            cfg, note = mine_dpo_pairs(run, cfg, p, seed, progress)
            run_notes += [note] if note else []
        clear_stage(Path(cfg.run_dir), run / "eval" / stage)
        final = run_stage(cfg)
        curves[stage] = read_trainer_losses(Path(cfg.run_dir))
        if (Path(cfg.run_dir) / "selection.json").is_file():
            sel = json.loads((Path(cfg.run_dir) / "selection.json").read_text())
            chosen, last = sel["selected"], sel["history"][-1]
            run_notes.append(f"{stage}: the final model is step {chosen['step']} of {last['step']}, "
                             f"the best of steps {', '.join(str(h['step']) for h in sel['history'])} on "
                             f"{chosen['pairs']} held-out training pairs (preference accuracy {chosen['accuracy']:.3f}; "
                             f"before DPO {sel['history'][0]['accuracy']:.3f}, last step {last['accuracy']:.3f}).")
            print(run_notes[-1], flush=True)
        train_s = time.perf_counter() - t
        model, processor = XGenMM.from_pretrained(final, device=device), XGenMMProcessor.from_pretrained(final)
        scores = evaluate_stage(model, processor, stage, world, run / "eval" / stage, p.eval_batch, p.few_shot, progress)
        if stage in PREFERENCE_STAGES:
            pref = preference_scores(preference_records(model, processor, run / "data" / "dpo_heldout.jsonl",
                                                        out=run / "eval" / stage / PREFERENCE_FILE))
            scores.update(pref)
            card.chance.update({k: 0.5 for k in pref})  # each pair is a choice of two
        card.add(stage, scores, time.perf_counter() - t)
        print(f"{stage}: trained in {train_s:.0f} s; " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items() if "/" not in k),
              flush=True)
        write_scorecard(card, run)

    plot_losses(curves, run / "loss_curves.png")
    notes = run_notes
    if model is not None and processor is not None:
        ex = worked_example(model, processor, world, seed)
        write_text_atomic(run / "example.json", json.dumps(ex, indent=2) + "\n")
        notes.append(f"Worked example: image `{ex['image']}`, question \"{ex['question']}\", "
                     f"answer \"{ex['answer']}\" (reference \"{ex['reference']}\").")
        print(f"\nworked example\n  image:    {ex['image']}\n  question: {ex['question']}\n"
              f"  answer:   {ex['answer']}   (reference: {ex['reference']})", flush=True)
    wall = time.perf_counter() - t_all
    notes.insert(0, f"Preset `{p.name}`, world `{p.world_preset}`, seed {seed}; total {wall:.0f} s wall.")
    complete = tuple(stages) == STAGES
    try:
        stderrs = target_stderrs(card, run / "eval", world, p.few_shot)
    except (OSError, ValueError, KeyError) as e:  # a damaged record must not cost the finished run its scorecard
        log.warning("targets' standard errors left out: %s", e)
        stderrs = {}
    targets = targets_section(card, p, wall, complete, stderrs)
    write_text_atomic(run / "targets.json",
                      json.dumps(targets_record(card, p, wall, complete, seed, stderrs), indent=2) + "\n")
    js, md = write_scorecard(card, run, notes, targets)
    print("\n" + md.read_text(), flush=True)
    print(f"scorecard: {md} and {js}; targets: {run / 'targets.json'}; loss curves: {run / 'loss_curves.png'}; stage configs: {run / 'configs'}", flush=True)
    return card
