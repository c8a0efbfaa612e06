"""`xgenmm demo [--preset full|quick] [--out DIR] [--seed S] [--device cpu|cuda|auto]`, and `xgenmm demo --compare RUN
[RUN ...]`: finished runs side by side."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the whole recipe on the synthetic world, with a scorecard",
        description="Generate the synthetic world, train its tokenizer and vision tower, then pretrain, "
        "instruction-tune (single- then multi-image), DPO and safety-tune the tiny model, evaluating after "
        "every stage; writes DIR/scorecard.md, DIR/scorecard.json, DIR/targets.json, DIR/loss_curves.png and "
        "DIR/configs/STAGE.yaml.",
    )
    p.add_argument("--preset", choices=("full", "quick"), default="full",
                   help="full: learn the world (budgeted for 10 minutes on 2 free CPU cores); quick: the smoke test (budgeted for 3)")
    p.add_argument("--out", default="runs/demo", help="run directory (default: runs/demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the world, the model and every stage")
    p.add_argument("--world", choices=("easy", "standard", "hard"), default=None,
                   help="the synthetic world's difficulty (default: the preset's, easy)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads for every stage (default 0: torch's default, one per core; on a machine shared "
                   "with other jobs, 1 can be faster)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                   help="where every stage trains and evaluates (default cpu, which the presets' time budgets and the "
                   "README's numbers are for; auto: cuda when torch sees one). On a GPU the trainer uses bf16 autocast, "
                   "so scores differ from a CPU run's")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.add_argument("--compare", nargs="+", metavar="RUN", default=None,
                   help="run nothing: print the targets and headline scores of these finished runs side by side "
                   "(one column per run, how many met each target, mean and sd of each score), as markdown")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="with --compare: also draw the runs' headline scores against the targets' thresholds as a PNG")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.plot and not args.compare:
        raise ValueError("--plot draws finished runs side by side: give it with --compare RUN [RUN ...]")
    if args.compare:
        from .compare import compare_markdown, compare_plot, load_run

        runs = [load_run(r) for r in args.compare]
        print(compare_markdown(runs), end="")
        if args.plot:
            print(f"plot: {compare_plot(runs, Path(args.plot))}")
        return 0
    from .pipeline import run_demo

    run_demo(args.preset, args.out, args.seed, progress=not args.no_progress, world_preset=args.world,
             threads=args.threads, device=args.device)
    return 0
