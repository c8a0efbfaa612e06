"""Training on a CUDA device: bf16 autocast (the release's precision) tracks the fp32 CPU run,
FSDP2 with its bf16 mixed-precision policy trains in one process on one GPU and on several
under torchrun (nccl), and every run saves fp32 weights. Skipped where no GPU is present (CI);
run on a GPU machine with `pytest tests -k cuda`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from trainhelpers import losses, tiny_config

from xgenmm.train import run_stage
from xgenmm.train.metrics import read_metrics

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
HERE = Path(__file__).parent


def _dtypes(run_dir: Path) -> set[str]:
    with safe_open(str(run_dir / "final" / "model.safetensors"), "pt") as f:
        return {str(f.get_slice(k).get_dtype()) for k in f.keys()}


def _close(got: dict, expected: dict, rel: float) -> None:
    assert sorted(got) == sorted(expected)
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=rel), step


@pytest.fixture(scope="module")
def cpu_run(world, tmp_path_factory):
    run = tmp_path_factory.mktemp("cpu") / "run"
    run_stage(tiny_config(world, run, "sft", 3))
    return run


@pytest.fixture(scope="module")
def cuda_run(world, tmp_path_factory):
    run = tmp_path_factory.mktemp("cuda") / "run"
    run_stage(tiny_config(world, run, "sft", 3, **{"runtime.device": "cuda"}))
    return run


def test_bf16_autocast_on_cuda_tracks_the_fp32_cpu_run(cpu_run, cuda_run):
    # The first step sees the same weights and batch: bf16 moves the loss by well under 1%.
    first_cpu, first_gpu = losses(cpu_run)[1], losses(cuda_run)[1]
    assert first_gpu == pytest.approx(first_cpu, rel=1e-2)
    _close(losses(cuda_run), losses(cpu_run), rel=5e-2)
    rows = read_metrics(cuda_run)
    assert all(r["peak_memory_gb"] > 0 and 0 < r["mfu"] < 1 for r in rows)
    assert _dtypes(cuda_run) == {"F32"}  # autocast computes in bf16; the weights stay fp32


def test_fsdp2_with_bf16_mixed_precision_in_one_process_on_cuda(world, tmp_path, cuda_run):
    run = tmp_path / "fsdp"
    run_stage(tiny_config(world, run, "sft", 3, **{"runtime.device": "cuda", "runtime.strategy": "fsdp"}))
    # bf16 parameters (FSDP's policy) against fp32 parameters under autocast: close, not equal.
    _close(losses(run), losses(cuda_run), rel=5e-2)
    assert _dtypes(run) == {"F32"}  # the sharded fp32 master weights, gathered at save


def test_dpo_with_lora_on_cuda(world, tmp_path):
    run = tmp_path / "dpo"
    run_stage(tiny_config(world, run, "dpo", 3, **{"runtime.device": "cuda"}))
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)


def test_the_caches_on_cuda_give_the_uncached_losses(world, tmp_path):
    """On a GPU the image-token cache keeps the loader's host tensors as keys and encodes
    only the images it has not seen; three epochs of DPO train as without it."""
    common = {"runtime.device": "cuda", "runtime.precision": "fp32", "data.batch.batch_size": 4}
    run_stage(tiny_config(world, tmp_path / "plain", "dpo", 9, **common))
    run_stage(tiny_config(world, tmp_path / "cached", "dpo", 9, **common,
                          **{"data.cache_mb": 64, "runtime.image_token_cache": True}))
    _close(losses(tmp_path / "cached"), losses(tmp_path / "plain"), rel=1e-4)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_gpu_ddp_and_fsdp_track_the_one_gpu_run_with_the_same_global_batch(world, tmp_path):
    common = {"runtime.device": "cuda", "optim.lr": 5e-3, "schedule.warmup_steps": 0}
    run_stage(tiny_config(world, tmp_path / "single", "sft", 3, **{**common, "optim.grad_accum": 2}))
    configs = []
    for strategy in ("ddp", "fsdp"):
        cfg = tiny_config(world, tmp_path / strategy, "sft", 3, **{**common, "runtime.strategy": strategy})
        (tmp_path / f"{strategy}.yaml").write_text(cfg.to_yaml())
        configs.append(str(tmp_path / f"{strategy}.yaml"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(HERE / "dist_worker.py"), "--backend", "nccl", *configs]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for strategy in ("ddp", "fsdp"):
        _close(losses(tmp_path / strategy), losses(tmp_path / "single"), rel=5e-2)
