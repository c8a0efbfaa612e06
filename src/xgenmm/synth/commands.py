"""`xgenmm synth`: write the synthetic world (data of every kind, eval sets, tokenizer corpus)."""

from __future__ import annotations

import argparse

from .sizes import SIZES
from .world import PRESETS


def add_synth_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of `xgenmm synth` (reusable by an alias such as `xgenmm data synth`)."""
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="standard", help="world difficulty")
    p.add_argument("--size", choices=sorted(SIZES), default="full", help="small: CI smoke tests; full: enough to learn")
    p.add_argument("--workers", type=int, default=1,
                   help="processes writing the data sets (the same bytes for any number)")
    p.add_argument("--tokenizer", action="store_true", help="also train the world's tokenizer into OUT/tokenizer")
    p.add_argument("--vocab-size", type=int, default=768, help="tokenizer vocabulary size (with --tokenizer)")
    p.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    from .generate import generate_world

    manifest = generate_world(args.out, seed=args.seed, preset=args.preset, size=args.size, workers=args.workers)
    if args.tokenizer:
        from .corpus import build_world_tokenizer

        tok = build_world_tokenizer(args.out, vocab_size=args.vocab_size)
        print(f"tokenizer: {len(tok)} tokens in {args.out}/tokenizer")
    train, evals = manifest["datasets"]["train"], manifest["datasets"]["eval"]
    print(f"world ({args.preset}, {args.size}, seed {args.seed}) in {args.out}: {len(manifest['files']) + 1} files")
    for name, info in {**train, **evals}.items():
        n = next(v for k, v in info.items() if isinstance(v, int))
        print(f"  {name:<20} {n}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("synth", help="write the synthetic world: training data, eval sets, tokenizer corpus")
    add_synth_arguments(p)
