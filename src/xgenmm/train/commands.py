"""`xgenmm train`:

    xgenmm train CONFIG.yaml [key.sub=value ...] [--resume] [--check]
    xgenmm train merge-lora RUN_DIR|CHECKPOINT_DIR OUT_DIR
    xgenmm train noise-pairs --model DIR --data PAIRS --out NEW.jsonl [--noise-step 500]
    xgenmm train mine-pairs --model DIR --data PAIRS --out KEPT.jsonl [--max-margin 1.0]
    xgenmm train describe

Under `torchrun --nproc_per_node N` the first form trains data-parallel."""

from __future__ import annotations

import argparse
import sys

USAGE = """xgenmm train CONFIG.yaml [key.sub=value ...] [--resume] [--check]
       xgenmm train merge-lora RUN_DIR|CHECKPOINT_DIR OUT_DIR
       xgenmm train noise-pairs --model DIR --data PAIRS --out NEW.jsonl [--noise-step T]
       xgenmm train mine-pairs --model DIR --data PAIRS --out KEPT.jsonl [--max-margin M]
       xgenmm train describe"""

EPILOG = """examples:
  xgenmm train configs/tiny/sft.yaml
  xgenmm train configs/sft.yaml optim.lr=1e-5 data.batch.batch_size=4 run_dir=runs/sft-b4
  torchrun --nproc_per_node 8 -m xgenmm.cli train configs/sft.yaml runtime.strategy=fsdp
  xgenmm train merge-lora runs/dpo runs/dpo-merged
  xgenmm train noise-pairs --model runs/dpo/final --data dpo/pairs.jsonl --out dpo/round2.jsonl
  xgenmm train mine-pairs --model runs/sft/final --data dpo/pairs.jsonl --out dpo/mined.jsonl"""


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train one stage of the recipe from a YAML config (pretrain, sft, dpo, safety)",
                              usage=USAGE, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="the stage's YAML config (or merge-lora / noise-pairs / mine-pairs / describe)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="key.sub=value overrides (or the subcommand's arguments)")
    p.set_defaults(func=_dispatch)


def _dispatch(args: argparse.Namespace) -> int:
    if args.config == "merge-lora":
        return _merge(args.rest)
    if args.config == "noise-pairs":
        return _noise_pairs(args.rest)
    if args.config == "mine-pairs":
        return _mine_pairs(args.rest)
    if args.config == "describe":
        from .config import describe

        print(describe())
        return 0
    return _train(args.config, args.rest)


def _train(config_path: str, rest: list[str]) -> int:
    from .config import ConfigError, load_config

    resume = "--resume" in rest
    check_only = "--check" in rest
    flags = [r for r in rest if r.startswith("--")]
    unknown = sorted(set(flags) - {"--resume", "--check"})
    if unknown:
        print(f"xgenmm train: unknown option(s) {unknown}\nusage: {USAGE}", file=sys.stderr)
        return 2
    overrides = [r for r in rest if not r.startswith("--")]
    if resume:
        overrides.append("checkpoint.resume=must")
    try:
        cfg = load_config(config_path, overrides)
    except ConfigError as e:
        print(f"xgenmm train: {e}", file=sys.stderr)
        return 1
    if check_only:
        print(f"{config_path}: ok ({cfg.stage}, {cfg.schedule.max_steps} steps, run_dir {cfg.run_dir})")
        return 0
    from .loop import TrainingDiverged, run_stage

    try:
        final = run_stage(cfg)
    except TrainingDiverged as e:
        print(f"xgenmm train: {e}", file=sys.stderr)
        return 3
    print(f"model: {final}")
    return 0


def _merge(rest: list[str]) -> int:
    p = argparse.ArgumentParser(prog="xgenmm train merge-lora",
                                description="merge a LoRA run's adapters into a plain model directory")
    p.add_argument("checkpoint", help="a run directory (its latest checkpoint) or RUN_DIR/checkpoints/step-N")
    p.add_argument("out", help="the plain model directory to write")
    a = p.parse_args(rest)
    from .lora import merge_checkpoint

    print(f"model: {merge_checkpoint(a.checkpoint, a.out)}")
    return 0


def _noise_pairs(rest: list[str]) -> int:
    from .noise_pairs import NoisePairsConfig, build_noised_pairs

    p = argparse.ArgumentParser(prog="xgenmm train noise-pairs",
                                description="DPO round two: the model's answers on noised images become the rejected answers")
    p.add_argument("--model", required=True, help="model directory (the first DPO round's RUN_DIR/final)")
    p.add_argument("--data", required=True, help="preference pairs whose prompts and chosen answers are kept")
    p.add_argument("--out", required=True, help="output JSONL")
    p.add_argument("--noise-step", type=int, default=500, help="diffusion step in [0, 1000] (more: noisier)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--keep-identical", action="store_true", help="keep pairs whose noised answer equals the chosen one")
    a = p.parse_args(rest)
    counts = build_noised_pairs(NoisePairsConfig(a.model, a.data, a.out, a.noise_step, a.max_new_tokens, a.batch_size,
                                                 a.seed, a.limit, a.keep_identical))
    print(f"{a.out}: {counts['written']} pairs ({counts['identical']} identical to the chosen answer dropped, "
          f"{counts['empty']} empty answers dropped, {counts['skipped']} bad samples skipped, {counts['read']} read)")
    return 0


def _mine_pairs(rest: list[str]) -> int:
    from .mine_pairs import MinePairsConfig, mine_pairs

    p = argparse.ArgumentParser(prog="xgenmm train mine-pairs",
                                description="keep the preference pairs the model ranks wrong or only narrowly right "
                                            "(chosen-minus-rejected log-probability below --max-margin): DPO data on "
                                            "the model's own mistakes")
    p.add_argument("--model", required=True, help="model directory that will be DPO-tuned (e.g. the SFT stage's final)")
    p.add_argument("--data", required=True, help="preference pairs to score")
    p.add_argument("--out", required=True, help="output JSONL of the kept pairs")
    p.add_argument("--max-margin", type=float, default=1.0, help="keep pairs whose margin in nats is below this")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=2048, help="tokens per answer row (the DPO stage's data.encode.max_length)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    a = p.parse_args(rest)
    try:
        counts = mine_pairs(MinePairsConfig(a.model, a.data, a.out, a.max_margin, a.batch_size, a.max_length, a.device))
    except ValueError as e:
        print(f"xgenmm train mine-pairs: {e}", file=sys.stderr)
        return 1
    print(f"{a.out}: {counts['kept']} of {counts['scored']} pairs kept (margin below {a.max_margin} nats; the model "
          f"already preferred the chosen answer in {counts['ranked_right']}), {counts['skipped']} bad pairs skipped")
    return 0
