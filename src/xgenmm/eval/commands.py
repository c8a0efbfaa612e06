"""`xgenmm eval`: run tasks on a model directory, write predictions, results and a table."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..model.commands import check_beam_flags
from .tasks.base import DEMO_SELECTIONS, MC_SCORINGS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a model on benchmarks (and the synthetic world's tasks)")
    p.add_argument("--model", required=True, help="model directory (with its processor files) or hub id")
    p.add_argument("--task", required=True, help="task name(s), comma-separated; 'list' prints the known tasks")
    p.add_argument("--data", default=".", help="folder holding one sub-folder per task (or a synthetic world's root)")
    p.add_argument("--shots", default=None,
                   help="base-model few-shot, e.g. 0,4,8 (omit for instruct prompts with the chat template)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples of each task")
    p.add_argument("--out", default="eval_out", help="output folder (an existing run there is resumed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the few-shot demonstration draw")
    p.add_argument("--demos", choices=DEMO_SELECTIONS, default="random",
                   help="few-shot demonstrations: drawn at random, or those whose question is most like the sample's")
    p.add_argument("--text-demos", type=int, default=0, metavar="N",
                   help="with 0 among --shots: lead each 0-shot prompt with N demonstrations' text, their images "
                        "removed, as OpenFlamingo's zero-shot evaluation does (N=2)")
    p.add_argument("--mc-scoring", choices=MC_SCORINGS, default=None,
                   help="multiple choice: read the generated letter, or pick the most likely option (default: per task)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="override the task's generation budget")
    p.add_argument("--num-beams", type=int, default=1,
                   help="beam search with this many beams (default 1: greedy); OpenFlamingo's evaluation of base "
                   "models uses 3, with --length-penalty 0 and --max-new-tokens 5 (VQA) or 20 (captions)")
    p.add_argument("--length-penalty", type=float, default=1.0,
                   help="beam search: a finished sequence scores its summed log-probability / length**this "
                   "(Hugging Face's meaning; default 1.0)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.set_defaults(func=_eval)


def _parse_shots(value: str | None) -> list[int | None]:
    if value is None:
        return [None]
    try:
        shots = [int(x) for x in value.split(",") if x.strip()]
    except ValueError as e:
        raise ValueError(f"--shots must be comma-separated integers, got {value!r}") from e
    if not shots or any(k < 0 for k in shots):
        raise ValueError(f"--shots must be non-negative integers, got {value!r}")
    return shots


def _eval(args) -> int:
    from .tasks import TASKS, get_task

    if args.task == "list":
        for name, t in sorted(TASKS.items()):
            print(f"{name:16s} {t.kind:9s} {t.folder}/: {t.layout}")
        return 0
    tasks = [get_task(n.strip()) for n in args.task.split(",") if n.strip()]  # unknown names fail before loading
    shots = _parse_shots(args.shots)
    check_beam_flags(args.num_beams, args.length_penalty)
    if args.text_demos < 0:
        raise ValueError(f"--text-demos must be a non-negative integer, got {args.text_demos}")
    if args.text_demos and 0 not in shots:
        raise ValueError("--text-demos leads 0-shot prompts: give 0 among --shots")

    import torch

    from ..model.processor import XGenMMProcessor
    from ..model.xgenmm import XGenMM
    from .harness import evaluate
    from .report import markdown_table, write_report

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = XGenMM.from_pretrained(args.model, device=device)
    processor = XGenMMProcessor.from_pretrained(args.model)
    results = []
    for task in tasks:
        for k in shots:
            if k is not None and not task.few_shot:
                print(f"{task.name}: no few-shot prompt, run without --shots; skipped")
                continue
            results.append(evaluate(model, processor, task, args.data, shots=k, batch_size=args.batch_size,
                                    limit=args.limit, out_dir=args.out, seed=args.seed, demos=args.demos, mc_scoring=args.mc_scoring,
                                    max_new_tokens=args.max_new_tokens, text_demos=args.text_demos if k == 0 else 0,
                                    num_beams=args.num_beams, length_penalty=args.length_penalty))
    write_report(Path(args.out), results)
    print(markdown_table(results), end="")
    print(f"results: {Path(args.out) / 'results.json'}, {Path(args.out) / 'results.md'}")
    return 0
