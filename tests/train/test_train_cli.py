"""`xgenmm train`: a YAML config plus key=value overrides, problems listed before any compute."""

from __future__ import annotations

from trainhelpers import tiny_config

from xgenmm.cli import main


def test_train_command_runs_a_config_with_overrides(world, tmp_path, capsys):
    path = tmp_path / "sft.yaml"
    path.write_text(tiny_config(world, tmp_path / "run", "sft", steps=3).to_yaml())
    assert main(["train", str(path), "schedule.max_steps=1", f"run_dir={tmp_path / 'other'}"]) == 0
    assert f"model: {tmp_path / 'other' / 'final'}" in capsys.readouterr().out
    assert (tmp_path / "other" / "checkpoints" / "step-00000001").is_dir()
    assert not (tmp_path / "run").exists()


def test_train_command_lists_every_problem_and_exits_1(world, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("stage: sft\nmodel: {preset: tiny, tokenizer: /nonexistent/tok}\ndata: {source: /nonexistent/d.json}\n")
    assert main(["train", str(path), "optim.lr=0"]) == 1
    err = capsys.readouterr().err
    assert "3 problem(s)" in err and "model.tokenizer" in err and "data.source" in err and "optim.lr" in err


def test_train_check_validates_without_training(world, tmp_path, capsys):
    path = tmp_path / "sft.yaml"
    path.write_text(tiny_config(world, tmp_path / "run", "sft").to_yaml())
    assert main(["train", str(path), "--check"]) == 0
    assert "ok (sft" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()
