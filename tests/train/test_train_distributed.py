"""Data parallel on CPU (gloo, 2 processes under torchrun): DDP and FSDP2 runs match the
1-process run with the same global batch, step by step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from trainhelpers import losses, tiny_config

from xgenmm.train import run_stage

HERE = Path(__file__).parent


@pytest.mark.slow
def test_two_process_ddp_and_fsdp_match_one_process_with_the_same_global_batch(world, tmp_path):
    steps = 3
    common = {"optim.lr": 5e-3, "schedule.warmup_steps": 0}
    # 1 process: 2 micro-batches of 2 rows per step; 2 processes: 1 micro-batch of 2 rows each.
    run_stage(tiny_config(world, tmp_path / "single", "sft", steps, **{**common, "optim.grad_accum": 2}))
    configs = []
    for strategy in ("ddp", "fsdp"):
        cfg = tiny_config(world, tmp_path / strategy, "sft", steps, **{**common, "runtime.strategy": strategy})
        path = tmp_path / f"{strategy}.yaml"
        path.write_text(cfg.to_yaml())
        configs.append(str(path))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(HERE / "dist_worker.py"), *configs]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = losses(tmp_path / "single")
    assert sorted(expected) == [1, 2, 3]
    for strategy in ("ddp", "fsdp"):
        got = losses(tmp_path / strategy)
        assert sorted(got) == sorted(expected), strategy
        for step in expected:
            assert got[step] == pytest.approx(expected[step], rel=1e-5), (strategy, step)
        assert (tmp_path / strategy / "final" / "model.safetensors").exists()


def test_fsdp_in_one_process_matches_the_unsharded_run(world, tmp_path):
    """FSDP2 needs a process group even on one device: the trainer makes a group of one, trains
    exactly as the unsharded run does and leaves no group behind."""
    import torch.distributed as dist

    run_stage(tiny_config(world, tmp_path / "single", "sft", 2))
    run_stage(tiny_config(world, tmp_path / "fsdp", "sft", 2, **{"runtime.strategy": "fsdp"}))
    assert not dist.is_initialized()
    expected, got = losses(tmp_path / "single"), losses(tmp_path / "fsdp")
    assert sorted(got) == sorted(expected) == [1, 2]
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-5), step
    assert (tmp_path / "fsdp" / "final" / "model.safetensors").exists()
