"""`xgenmm data check` (scan a source or mixture as training reads it) and `xgenmm data synth`
(the synthetic world's generator, when present)."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="check data sources and mixtures; write the synthetic world")
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    c = sub.add_parser("check", help="scan a source or a mixture the way training reads it and report")
    c.add_argument("source", help="a .json/.jsonl/.parquet file, WebDataset shards (brace patterns), or a mixture .yaml")
    c.add_argument("--model", help="model directory: its processor (tokenizer, image processor) measures lengths")
    c.add_argument("--tokenizer", help="tokenizer directory (with the release's image processor: anyres 384, 128 tokens per crop)")
    c.add_argument("--strict", action="store_true", help="exit non-zero at the first bad sample, naming it")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.add_argument("--max-length", type=int, default=2048, help="tokens per sample, image tokens included")
    c.add_argument("--truncation", choices=["truncate", "drop"], default="truncate", help="length policy")
    c.add_argument("--convention", choices=["auto", "instruct", "base"], default="auto", help="image convention")
    c.add_argument("--max-images", type=int, default=4, help="conversations with more images are skipped")
    c.add_argument("--batch-size", type=int, default=8, help="rows per batch (for the padding estimate)")
    c.add_argument("--limit", type=int, help="stop after this many raw records (needed for resampled streams)")
    c.add_argument("--seed", type=int, default=42, help="stream seed (a mixture file's own seed wins)")
    c.set_defaults(func=_check)

    s = sub.add_parser("synth", help="write the synthetic world (same as `xgenmm synth`)")
    try:
        from ..synth.commands import add_synth_arguments
    except ImportError:
        s.set_defaults(func=lambda args: _missing())
    else:
        add_synth_arguments(s)


def _missing() -> int:
    print("xgenmm data synth: the synthetic world generator (xgenmm.synth) is not installed", file=sys.stderr)
    return 1


def load_processor(model: str | None, tokenizer: str | None):
    """The processor that measures lengths: a model's, or a tokenizer with the release's images."""
    from ..model.processor import XGenMMProcessor

    if model:
        return XGenMMProcessor.from_pretrained(model)
    if tokenizer:
        from transformers import AutoTokenizer

        from ..model.image_processing import XGenMMImageProcessor

        return XGenMMProcessor(XGenMMImageProcessor(384, "anyres"), AutoTokenizer.from_pretrained(tokenizer), 128)
    raise ValueError("data check needs --model DIR or --tokenizer DIR to count tokens")


def _check(args: argparse.Namespace) -> int:
    from .check import check, format_report
    from .encode import EncodeConfig
    from .errors import SampleError
    from .parse import SamplePolicy

    proc = load_processor(args.model, args.tokenizer)
    try:
        report = check(
            args.source, proc,
            EncodeConfig(max_length=args.max_length, truncation=args.truncation, convention=args.convention),
            SamplePolicy(max_images=args.max_images, strict=args.strict),
            batch_size=args.batch_size, limit=args.limit, seed=args.seed, progress=not args.json and sys.stderr.isatty(),
        )
    except SampleError as e:  # --strict: the first bad sample ends the scan
        print(f"xgenmm data check: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
