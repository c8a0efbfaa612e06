"""The `xgenmm` command. Each subsystem registers its own subcommands through a
`register(subparsers)` function; this file only wires them together, importing each
subsystem lazily so that `xgenmm --help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# (module, attribute): modules that define `register(subparsers)`.
COMMAND_MODULES = [
    "xgenmm.model.commands",  # generate, convert
    "xgenmm.data.commands",  # data check, data synth
    "xgenmm.train.commands",  # train
    "xgenmm.eval.commands",  # eval
    "xgenmm.curate.commands",  # curate
    "xgenmm.synth.commands",  # synth
    "xgenmm.demo.commands",  # demo
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xgenmm", description="xGen-MM (BLIP-3): build data, train, evaluate and run SigLIP -> resampler -> LLM models")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if name == e.name or name.startswith(f"{e.name}."):  # subsystem not present in this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, KeyError) as e:
        # Bad input (a value, or a path that is missing or of the wrong kind): a clear one-line
        # error, no traceback (use -v for one).
        if args.verbose:
            raise
        print(f"xgenmm {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
