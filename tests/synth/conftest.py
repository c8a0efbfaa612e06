"""One small world per test session, written through the real `xgenmm synth` command."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    from xgenmm.cli import main

    out = tmp_path_factory.mktemp("world") / "w"
    rc = main(["synth", "--out", str(out), "--seed", "0", "--preset", "standard", "--size", "small"])
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def small_manifest(small_world):
    return json.loads((small_world / "manifest.json").read_text())
