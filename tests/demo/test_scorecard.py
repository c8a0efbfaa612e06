"""The scorecard writer: JSON of the documented shape, a markdown table with a row per stage
and a chance row, validation of scores, and the loss-curve figure."""

from __future__ import annotations

import json

import pytest

from xgenmm.demo.scorecard import Scorecard, plot_losses, to_markdown, write_scorecard


def card() -> Scorecard:
    c = Scorecard(chance={"world_vqa": 0.2, "world_vqa/colour": 0.1667})
    c.add("pretrain", {"world_caption_0shot": 1.7, "world_caption_4shot": 2.1}, seconds=12.34)
    c.add("sft_single", {"world_vqa": 0.93, "world_vqa/colour": 1.0}, seconds=100)
    return c


def test_json_has_stages_chance_and_seconds(tmp_path):
    js, md = write_scorecard(card(), tmp_path)
    data = json.loads(js.read_text())
    assert set(data) == {"stages", "chance", "seconds"}
    assert data["stages"]["sft_single"] == {"world_vqa": 0.93, "world_vqa/colour": 1.0}
    assert data["chance"]["world_vqa"] == 0.2
    assert data["seconds"] == {"pretrain": 12.3, "sft_single": 100.0}
    assert Scorecard.from_dict(data).to_dict() == data
    assert md.read_text() == to_markdown(card())


def test_markdown_has_a_row_per_stage_and_chance_beside_scores():
    text = to_markdown(card())
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert any(r.startswith("| pretrain |") for r in rows)
    assert any(r.startswith("| sft_single | 0.930 |") for r in rows)
    chance = [r for r in rows if r.startswith("| chance |")]
    assert chance and "0.200" in chance[0]


def test_accuracy_outside_zero_one_is_rejected():
    with pytest.raises(ValueError, match="world_vqa"):
        Scorecard().add("sft_single", {"world_vqa": 93.0})
    with pytest.raises(ValueError, match="finite"):
        Scorecard().add("sft_single", {"world_vqa": float("nan")})


def test_cider_may_exceed_one():
    c = Scorecard()
    c.add("pretrain", {"world_caption_4shot": 2.5})
    assert c.stages["pretrain"]["world_caption_4shot"] == 2.5


def test_loss_curves_png_has_a_panel_per_stage(tmp_path):
    out = plot_losses({"vision": [(1, 3.0), (2, 2.0)], "sft_single": [(1, 1.0), (2, 0.5)], "empty": []},
                      tmp_path / "loss_curves.png")
    assert out is not None and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_losses({}, tmp_path / "none.png") is None


def test_a_rerun_stage_starts_from_clean_trainer_and_evaluation_dirs(tmp_path):
    # The evaluation harness resumes from a task's predictions file; a stage trained again
    # must not be scored with its earlier model's answers.
    from xgenmm.demo.pipeline import clear_stage

    run_dir, eval_dir, other = tmp_path / "stages" / "dpo", tmp_path / "eval" / "dpo", tmp_path / "eval" / "sft_multi"
    for d in (run_dir / "final", eval_dir / "world_vqa", other / "world_vqa"):
        d.mkdir(parents=True)
        (d / "predictions.jsonl").write_text('{"id": "0", "prediction": "stale"}\n')
    clear_stage(run_dir, eval_dir)
    assert not run_dir.exists() and not eval_dir.exists()
    assert (other / "world_vqa" / "predictions.jsonl").is_file()  # other stages' results stay
    clear_stage(run_dir, eval_dir)  # nothing there: fine
