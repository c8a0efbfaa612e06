"""A demo run reuses the world already in its run directory only when that world is complete
and was written by this version of the generator with the run's seed, difficulty and size."""

from __future__ import annotations

import json
from dataclasses import asdict

from xgenmm.demo.pipeline import existing_world
from xgenmm.demo.presets import QUICK
from xgenmm.synth.generate import MANIFEST_VERSION


def write_manifest(world, **changes) -> dict:
    (world / "sft").mkdir(parents=True, exist_ok=True)
    (world / "sft" / "single.json").write_text("[]")
    man = {"version": MANIFEST_VERSION, "seed": 3, "preset": QUICK.world_preset, "size": asdict(QUICK.world_size),
           "files": [{"path": "sft/single.json"}], **changes}
    (world / "manifest.json").write_text(json.dumps(man))
    return man


def test_a_complete_world_of_this_version_is_reused(tmp_path):
    man = write_manifest(tmp_path)
    assert existing_world(tmp_path, 3, QUICK) == man


def test_a_world_of_another_version_seed_or_size_is_written_again(tmp_path):
    # version 1 wrote no `sft/single_conversations.json`, which multi-image SFT's mixture names
    for changes in ({"version": 1}, {"seed": 4}, {"size": "small"}):
        write_manifest(tmp_path, **changes)
        assert existing_world(tmp_path, 3, QUICK) is None, changes
    assert existing_world(tmp_path / "nowhere", 3, QUICK) is None


def test_a_world_missing_a_listed_file_is_written_again(tmp_path):
    write_manifest(tmp_path)
    (tmp_path / "sft" / "single.json").unlink()
    assert existing_world(tmp_path, 3, QUICK) is None
