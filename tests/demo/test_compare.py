"""`xgenmm demo --compare`: finished runs side by side, read from the files the demo writes."""

from __future__ import annotations

import json

import pytest
from test_targets import full_card

from xgenmm.cli import main
from xgenmm.demo.compare import compare_markdown, load_run
from xgenmm.demo.pipeline import targets_record
from xgenmm.demo.presets import FULL, QUICK
from xgenmm.demo.scorecard import write_scorecard


def _finished_run(path, card, seed, preset=FULL, wall=490.0):
    write_scorecard(card, path)
    (path / "targets.json").write_text(json.dumps(targets_record(card, preset, wall, True, seed)))
    return path


def test_runs_side_by_side_with_how_many_met_each_target_and_the_spread(tmp_path, capsys):
    a = _finished_run(tmp_path / "s0", full_card(), 0)
    b = _finished_run(tmp_path / "s1", full_card(**{"sft_single/world_vqa": 0.895, "sft_single/world_vqa/colour": 0.662}),
                      1, wall=507.0)
    assert main(["demo", "--compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "| target | s0 (seed 0) | s1 (seed 1) | met in |" in out
    assert "| single-image SFT: world VQA >= 0.90 | 0.945 yes | 0.895 no | 1 of 2 |" in out
    assert "| wall time within 10 min | 8:10 yes | 8:27 yes | 2 of 2 |" in out
    assert "| base model: 4-shot VQA accuracy above 0-shot | 0.0375 -> 0.0018 no | 0.0375 -> 0.0018 no | 0 of 2 |" in out
    # mean and sample standard deviation over the runs: 0.945 and 0.895 -> 0.920, 0.035
    assert "| single-image SFT: world VQA | 0.945 | 0.895 | 0.920 | 0.035 |" in out
    assert "| single-image SFT: colour | 0.925 | 0.662 | 0.794 | 0.186 |" in out
    assert "| base model: VQA, 4-shot | 0.002 | 0.002 | 0.002 | 0.000 |" in out
    assert "s1 (seed 1): preset full, world easy, recipe, 8 of 11 met" in out
    assert "differ in preset or world" not in out


def test_a_quick_run_beside_a_full_one_shows_what_it_did_not_check(tmp_path):
    full = _finished_run(tmp_path / "full", full_card(), 0)
    quick = _finished_run(tmp_path / "quick", full_card(), 0, preset=QUICK, wall=75.0)
    md = compare_markdown([load_run(full), load_run(quick)])
    assert "| wall time within 10 min | 8:10 yes | - | 1 of 1 |" in md
    assert "| wall time within 3 min | - | 1:15 yes | 1 of 1 |" in md
    assert "| single-image SFT: world VQA >= 0.90 | 0.945 yes | - | 1 of 1 |" in md
    assert "These runs differ in preset or world: the means and standard deviations below mix them." in md


def test_a_folder_that_is_not_a_finished_run_is_named(tmp_path, capsys):
    (tmp_path / "half").mkdir()
    write_scorecard(full_card(), tmp_path / "half")
    assert main(["demo", "--compare", str(tmp_path / "half")]) == 1
    err = capsys.readouterr().err
    assert "half/targets.json: not found" in err and "finished `xgenmm demo` runs" in err
    (tmp_path / "half" / "targets.json").write_text("{")
    with pytest.raises(ValueError, match="targets.json: not valid JSON"):
        load_run(tmp_path / "half")
    (tmp_path / "half" / "targets.json").write_text("{}")
    with pytest.raises(ValueError, match="no field 'seed'"):
        load_run(tmp_path / "half")


def test_a_run_of_some_stages_shows_what_did_not_run(tmp_path):
    from xgenmm.demo.scorecard import Scorecard

    part = Scorecard.from_dict(full_card().to_dict())
    for stage in ("sft_multi", "dpo", "safety"):
        del part.stages[stage]
    write_scorecard(part, tmp_path / "part")
    (tmp_path / "part" / "targets.json").write_text(json.dumps(targets_record(part, FULL, 300.0, False, 2)))
    md = compare_markdown([load_run(_finished_run(tmp_path / "all", full_card(), 0)), load_run(tmp_path / "part")])
    assert "| multi-image SFT: multi-image questions >= 0.80 | 0.879 yes | not run | 1 of 1 |" in md
    assert "| multi-image SFT: multi-image questions | 0.879 | - | 0.879 | - |" in md


def test_margins_in_standard_errors_and_same_named_runs(tmp_path):
    card = full_card(**{"sft_single/world_vqa": 0.895})
    for seed, where in ((0, tmp_path / "a" / "run"), (1, tmp_path / "b" / "run")):
        where.mkdir(parents=True)
        write_scorecard(card, where)
        (where / "targets.json").write_text(json.dumps(targets_record(card, FULL, 490.0, True, seed, {"vqa": 0.0125})))
    md = compare_markdown([load_run(tmp_path / "a" / "run"), load_run(tmp_path / "b" / "run")])
    assert f"| target | {tmp_path / 'a' / 'run'} (seed 0) | {tmp_path / 'b' / 'run'} (seed 1) | met in |" in md
    assert "| single-image SFT: world VQA >= 0.90 | 0.895 no (-0.4 SE) | 0.895 no (-0.4 SE) | 0 of 2 |" in md
    broken = json.loads((tmp_path / "a" / "run" / "targets.json").read_text())
    del broken["targets"][3]["measured"]
    (tmp_path / "a" / "run" / "targets.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="target 3 has no field 'measured'"):
        load_run(tmp_path / "a" / "run")


def test_plot_draws_the_runs_as_a_png_and_needs_compare(tmp_path, capsys):
    a = _finished_run(tmp_path / "s0", full_card(), 0)
    b = _finished_run(tmp_path / "s1", full_card(**{"sft_single/world_vqa": 0.895}), 1)
    png = tmp_path / "plots" / "runs.png"
    assert main(["demo", "--compare", str(a), str(b), "--plot", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG" and f"plot: {png}" in capsys.readouterr().out
    assert not list(png.parent.glob(".*"))  # written through a temporary file, none left behind
    assert main(["demo", "--plot", str(png)]) == 1
    assert "give it with --compare" in capsys.readouterr().err
