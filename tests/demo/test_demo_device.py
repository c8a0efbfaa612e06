"""`xgenmm demo --device`: where every stage trains and evaluates, and the other options checked
before any work. cpu by default (the presets' budgets are for it); auto picks cuda when torch
sees one; cuda without a CUDA device fails before anything is written. The cuda case runs the
quick preset on the GPU (skipped without one; run on a GPU machine with `pytest tests -k cuda`)."""

from __future__ import annotations

import json

import pytest
import torch

from xgenmm.cli import main
from xgenmm.demo.pipeline import demo_device, run_demo
from xgenmm.train.config import load_config

TRAINER_STAGES = ("pretrain", "sft_single", "sft_multi", "dpo", "safety")


def test_device_names_are_checked():
    assert demo_device("cpu") == "cpu"
    assert demo_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be one of cpu, cuda, auto, got 'gpu'"):
        demo_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_gpu_fails_before_the_run_directory_is_written(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="torch sees no CUDA device"):
        run_demo("quick", out, progress=False, device="cuda")
    assert not out.exists()
    with pytest.raises(SystemExit):  # argparse refuses a device it does not know
        main(["demo", "--device", "tpu", "--out", str(out)])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_quick_demo_runs_every_stage_on_cuda(tmp_path):
    out = tmp_path / "run"
    assert main(["demo", "--preset", "quick", "--device", "cuda", "--out", str(out), "--no-progress"]) == 0
    for stage in TRAINER_STAGES:
        assert load_config(out / "configs" / f"{stage}.yaml").runtime.device == "cuda"
    card = json.loads((out / "scorecard.json").read_text())
    assert all(card["stages"][s] for s in card["seconds"] if s not in ("world", "tokenizer"))
    # as on the CPU (test_demo_quick.py): single-image SFT learns colour and beats chance overall
    sft, chance = card["stages"]["sft_single"], card["chance"]
    assert sft["world_vqa/colour"] >= 2 * chance["world_vqa/colour"], sft
    assert sft["world_vqa"] >= chance["world_vqa"] + 0.1, sft
    assert json.loads((out / "example.json").read_text())["answer"]


def test_bad_threads_or_a_file_as_run_directory_fail_before_any_work(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a run")
    assert main(["demo", "--preset", "quick", "--out", str(afile), "--no-progress"]) == 1
    assert f"the run directory {afile} is a file" in capsys.readouterr().err
    assert afile.read_text() == "not a run"
    out = tmp_path / "run"
    assert main(["demo", "--preset", "quick", "--threads", "-2", "--out", str(out), "--no-progress"]) == 1
    assert "threads must be 0" in capsys.readouterr().err and not out.exists()
