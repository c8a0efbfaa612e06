"""Checkpoints: a run killed with SIGKILL and resumed gives the same loss at every step as a
run that was never interrupted; partial checkpoints are ignored; the last K are kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from trainhelpers import losses, tiny_config

from xgenmm.train import run_stage
from xgenmm.train.checkpoint import list_checkpoints

HERE = Path(__file__).parent


def test_run_killed_at_step_k_and_resumed_matches_the_uninterrupted_run(world, tmp_path):
    steps, k = 5, 2
    extra = {"checkpoint.every_steps": 1, "checkpoint.keep_last": 2, "lora.enabled": True, "lora.dropout": 0.1,
             "trainable.lang_model": False}  # dropout: the RNG state must be restored too
    reference = tiny_config(world, tmp_path / "reference", "sft", steps=steps, **extra)
    run_stage(reference)

    resumed = tiny_config(world, tmp_path / "resumed", "sft", steps=steps, **extra)
    config_file = tmp_path / "resumed.yaml"
    config_file.write_text(resumed.to_yaml())
    marker = tmp_path / "stalled"
    proc = subprocess.Popen([sys.executable, str(HERE / "stall_at_checkpoint.py"), str(config_file), str(k), str(marker)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"training process ended early: {proc.stderr.read().decode()[-2000:]}")
            if time.time() > deadline:
                pytest.fail("no checkpoint at step k within the time limit")
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert [s for s, _ in list_checkpoints(tmp_path / "resumed" / "checkpoints")] == [1, 2]

    run_stage(resumed)  # checkpoint.resume=auto: continues from step k
    expected, got = losses(tmp_path / "reference"), losses(tmp_path / "resumed")
    assert sorted(got) == list(range(1, steps + 1))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-7), step
    assert [s for s, _ in list_checkpoints(tmp_path / "resumed" / "checkpoints")] == [4, 5]  # keep_last 2


def test_a_partial_checkpoint_left_by_a_kill_is_ignored_and_removed(world, tmp_path):
    cfg = tiny_config(world, tmp_path / "run", "sft", steps=2, **{"checkpoint.every_steps": 1})
    run_stage(cfg)
    root = tmp_path / "run" / "checkpoints"
    # What a kill during the write of step 3 leaves: a temporary folder with some files.
    partial = root / ".step-00000003.tmp"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\0" * 100)
    cfg.schedule.max_steps = 3
    run_stage(cfg)
    assert not partial.exists()
    assert [s for s, _ in list_checkpoints(root)][-1] == 3
    assert sorted(losses(tmp_path / "run")) == [1, 2, 3]


def test_must_resume_without_a_checkpoint_is_an_error(world, tmp_path):
    cfg = tiny_config(world, tmp_path / "empty", "sft", steps=1, **{"checkpoint.resume": "must"})
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        run_stage(cfg)


def test_a_fresh_run_refuses_a_run_dir_with_an_earlier_runs_checkpoints(world, tmp_path):
    """With checkpoint.resume never, an earlier run's checkpoints would be pruned by step number
    together with this run's, and the newest of either taken as this run's model."""
    run_stage(tiny_config(world, tmp_path / "run", "sft", steps=2, **{"checkpoint.every_steps": 1}))
    again = tiny_config(world, tmp_path / "run", "sft", steps=1, **{"checkpoint.resume": "never"})
    with pytest.raises(FileExistsError, match=r"checkpoints of an earlier run \(steps 1, 2\)"):
        run_stage(again)
    assert [s for s, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [1, 2]


def test_a_checkpoint_moved_aside_to_be_written_again_is_restored(tmp_path):
    """`save` moves a step's checkpoint to .step-N.old before writing that step again (a stop on a
    non-finite loss right after a periodic checkpoint); a kill before the new one is in place
    must leave the old one, not delete it as partial."""
    from xgenmm.train.checkpoint import TRAINER_FILE, remove_stale

    root = tmp_path / "checkpoints"
    old, tmp = root / ".step-00000002.old", root / ".step-00000002.tmp"
    for d in (old, tmp):
        d.mkdir(parents=True)
    (old / TRAINER_FILE).write_text('{"step": 2}')
    (tmp / "model.safetensors").write_bytes(b"\0")
    remove_stale(root)
    assert [p.name for p in root.iterdir()] == ["step-00000002"]
    assert (root / "step-00000002" / TRAINER_FILE).read_text() == '{"step": 2}'
