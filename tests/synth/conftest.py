"""One small world per test session, written through the `synth` command's own parser."""

from __future__ import annotations

import argparse
import json

import pytest


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    from xgenmm.synth.commands import register

    parser = argparse.ArgumentParser(prog="xgenmm")
    register(parser.add_subparsers(dest="command"))
    out = tmp_path_factory.mktemp("world") / "w"
    args = parser.parse_args(["synth", "--out", str(out), "--seed", "0", "--preset", "standard", "--size", "small"])
    assert args.func(args) == 0
    return out


@pytest.fixture(scope="session")
def small_manifest(small_world):
    return json.loads((small_world / "manifest.json").read_text())
