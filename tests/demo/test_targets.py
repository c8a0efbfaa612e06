"""The demo's targets, checked on a scorecard: each verdict from the numbers it names, the
stages that did not run left undecided, and the markdown section."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from xgenmm.demo.scorecard import Scorecard, to_markdown, write_scorecard
from xgenmm.demo.targets import check_targets, targets_markdown

KINDS = ("colour", "count", "existence", "locating", "position", "reading", "shape")


def full_card(**changes) -> Scorecard:
    """A complete run's scorecard (the numbers of a real seed-0 run), with `changes` as
    {"stage/key": value}."""
    c = Scorecard()
    c.add("pretrain", {"world_caption_0shot": 0.951, "world_caption_4shot": 2.2, "world_vqa_0shot": 0.0375,
                       "world_vqa_4shot": 0.0018})
    c.add("sft_single", {"world_vqa": 0.945, **{f"world_vqa/{k}": 0.925 for k in KINDS}})
    c.add("sft_multi", {"world_vqa": 0.927, "world_multi": 0.879, "preference_accuracy": 0.935,
                        "world_pope/hallucination_rate": 0.16})
    c.add("dpo", {"preference_accuracy": 0.938, "world_pope/hallucination_rate": 0.15,
                  "world_safety/safe_answer_accuracy": 0.90})
    c.add("safety", {"world_safety/refusal_rate_unsafe": 1.0, "world_safety/safe_answer_accuracy": 0.90})
    for path, v in changes.items():
        stage, key = path.split("/", 1)
        c.stages[stage][key] = v
    return c


def verdicts(card: Scorecard, wall=None, budget=None) -> dict[str, bool | None]:
    return {c.target: c.met for c in check_targets(card, wall, budget)}


def test_a_run_that_meets_all_but_few_shot_vqa():
    v = verdicts(full_card(), wall=490, budget=600)
    assert v.pop("base model: 4-shot VQA accuracy above 0-shot") is False
    assert v.pop("wall time within 10 min") is True
    assert len(v) == 9 and all(m is True for m in v.values()), v


def test_each_target_fails_on_its_own_numbers():
    def met(target_start: str, **changes) -> bool | None:
        found = [c.met for c in check_targets(full_card(**changes)) if c.target.startswith(target_start)]
        assert len(found) == 1, target_start
        return found[0]

    assert met("single-image SFT: world VQA", **{"sft_single/world_vqa": 0.895}) is False
    assert met("single-image SFT: world VQA", **{"sft_single/world_vqa": 0.90}) is True  # at least 0.90
    assert met("single-image SFT: every", **{"sft_single/world_vqa/colour": 0.7375}) is False
    assert met("multi-image SFT: multi-image", **{"sft_multi/world_multi": 0.79}) is False
    # 0.945 -> 0.924 loses 2.1 points; 0.925 loses exactly 2.0
    assert met("multi-image SFT: single-image", **{"sft_multi/world_vqa": 0.924}) is False
    assert met("multi-image SFT: single-image", **{"sft_multi/world_vqa": 0.925}) is True
    assert met("DPO: preference", **{"dpo/preference_accuracy": 0.935}) is False  # equal is not up
    assert met("DPO: POPE", **{"dpo/world_pope/hallucination_rate": 0.17}) is False
    assert met("safety tuning: unsafe", **{"safety/world_safety/refusal_rate_unsafe": 0.89}) is False
    # 0.855 of 0.90 is 95%, as is 0.19 of 0.20; 0.85 of 0.90 is 94.4%
    assert met("safety tuning: ordinary", **{"safety/world_safety/safe_answer_accuracy": 0.855}) is True
    assert met("safety tuning: ordinary", **{"dpo/world_safety/safe_answer_accuracy": 0.20,
                                             "safety/world_safety/safe_answer_accuracy": 0.19}) is True
    assert met("safety tuning: ordinary", **{"safety/world_safety/safe_answer_accuracy": 0.85}) is False
    assert met("safety tuning: ordinary", **{"dpo/world_safety/safe_answer_accuracy": 0.0,
                                             "safety/world_safety/safe_answer_accuracy": 0.0}) is True
    assert met("base model: 4-shot captioning", **{"pretrain/world_caption_4shot": 0.9}) is False
    assert met("base model: 4-shot VQA", **{"pretrain/world_vqa_4shot": 0.05}) is True
    # "at least" holds on the threshold itself; "up", "down" and "above" do not hold on equality
    assert met("single-image SFT: every", **{"sft_single/world_vqa/colour": 0.75}) is True
    assert met("single-image SFT: every", **{"sft_single/world_vqa/colour": 0.7499}) is False
    assert met("multi-image SFT: multi-image", **{"sft_multi/world_multi": 0.80}) is True
    assert met("safety tuning: unsafe", **{"safety/world_safety/refusal_rate_unsafe": 0.90}) is True
    assert met("base model: 4-shot VQA", **{"pretrain/world_vqa_4shot": 0.0375}) is False
    assert met("DPO: POPE", **{"dpo/world_pope/hallucination_rate": 0.16}) is False
    assert met("DPO: POPE", **{"dpo/world_pope/hallucination_rate": 0.159}) is True
    assert met("DPO: preference", **{"dpo/preference_accuracy": 0.936}) is True


def test_the_kinds_below_target_are_named():
    checks = check_targets(full_card(**{"sft_single/world_vqa/colour": 0.662, "sft_single/world_vqa/locating": 0.7}))
    kind = next(c for c in checks if c.target.startswith("single-image SFT: every"))
    assert kind.met is False and kind.measured == "colour 0.662, locating 0.7"
    ok = next(c for c in check_targets(full_card()) if c.target.startswith("single-image SFT: every"))
    assert ok.measured.startswith("lowest: ")


def test_stages_that_did_not_run_are_left_undecided():
    c = Scorecard()
    c.add("pretrain", {"world_caption_0shot": 0.5, "world_caption_4shot": 0.7, "world_vqa_0shot": 0.1,
                       "world_vqa_4shot": 0.2})
    v = verdicts(c)
    assert "wall time within 10 min" not in v  # no wall time given
    assert v.pop("base model: 4-shot captioning CIDEr above 0-shot") is True
    assert v.pop("base model: 4-shot VQA accuracy above 0-shot") is True
    assert set(v.values()) == {None}
    lines = targets_markdown(check_targets(c))
    assert "2 of 2 targets met (8 not run)." in lines


def test_time_budget_and_markdown_section(tmp_path):
    checks = check_targets(full_card(), wall_seconds=641, budget_seconds=600)
    assert checks[0].target == "wall time within 10 min" and checks[0].measured == "10:41" and checks[0].met is False
    lines = targets_markdown(checks)
    assert "| wall time within 10 min | 10:41 | - | no |" in lines
    assert "| single-image SFT: world VQA >= 0.90 | 0.945 | +0.045 | yes |" in lines  # margin, no stderr given
    assert "9 of 11 targets met." in lines  # time and few-shot VQA missed, nothing else
    js, md = write_scorecard(full_card(), tmp_path, targets=lines)
    text = md.read_text()
    assert "## Targets" in text and "| wall time within 10 min | 10:41 | - | no |" in text
    assert text == to_markdown(full_card(), targets=lines)
    assert set(json.loads(js.read_text())) == {"stages", "chance", "seconds"}  # the JSON keeps its shape


def test_stage_headings_show_the_run_clock_against_the_budget(capsys):
    from xgenmm.demo.pipeline import _say

    _say(4, 8, "pretrain", elapsed=88.4, budget=600)
    _say(1, 8, "world")
    out = capsys.readouterr().out
    assert "=== [4/8] pretraining" in out and "(1:28 elapsed, budget 10 min) ===" in out
    assert "=== [1/8] generate the synthetic world ===" in out  # no clock before the run has started


def test_the_drop_reads_as_a_change_and_the_few_shot_count_follows_the_preset():
    same = next(c for c in check_targets(full_card(**{"sft_multi/world_vqa": 0.945})) if c.key == "drop")
    assert same.met is True and same.measured == "0.945 -> 0.945 (unchanged)"
    up = next(c for c in check_targets(full_card(**{"sft_multi/world_vqa": 0.95})) if c.key == "drop")
    assert up.measured.endswith("(0.5 points gained)")
    c = full_card()
    c.stages["pretrain"] = {"world_caption_0shot": 1.0, "world_caption_8shot": 2.0, "world_vqa_0shot": 0.1,
                            "world_vqa_8shot": 0.05}
    eight = {x.key: x for x in check_targets(c, shots=8)}
    assert eight["few_shot_caption"].target == "base model: 8-shot captioning CIDEr above 0-shot"
    assert eight["few_shot_caption"].met is True and eight["few_shot_vqa"].met is False
    assert {x.key: x.met for x in check_targets(c)}["few_shot_vqa"] is None  # no 4-shot scores: not run


def test_targets_section_scope_by_preset_world_and_stages():
    from dataclasses import replace

    from xgenmm.demo.pipeline import targets_section
    from xgenmm.demo.presets import FULL, QUICK

    full = targets_section(full_card(), FULL, 490, complete=True)
    assert "| wall time within 10 min | 8:10 | - | yes |" in full and full[-1].startswith("Targets set for the full preset")
    quick = targets_section(full_card(), QUICK, 75, complete=True)
    assert [line for line in quick if line.startswith("| wall")] == ["| wall time within 3 min | 1:15 | - | yes |"]
    assert not any("single-image SFT" in line for line in quick) and "smoke test" in quick[-1]
    partial = targets_section(full_card(), FULL, 100, complete=False)
    assert not any(line.startswith("| wall") for line in partial)  # a partial run's time says nothing
    assert "(some stages only)" in partial[-1]
    hard = targets_section(full_card(), replace(FULL, world_preset="hard"), 490, complete=True)
    assert "(the hard world)" in hard[-1]


def test_targets_record_is_the_section_as_data():
    from dataclasses import replace

    from xgenmm.demo.pipeline import targets_record, targets_section
    from xgenmm.demo.presets import FULL, QUICK

    card = full_card()
    rec = json.loads(json.dumps(targets_record(card, FULL, 490, complete=True, seed=3)))  # JSON-clean
    assert (rec["preset"], rec["world"], rec["seed"], rec["scope"]) == ("full", "easy", 3, "recipe")
    assert rec["budget_seconds"] == 600 and rec["wall_seconds"] == 490
    assert [t["key"] for t in rec["targets"]] == [c.key for c in check_targets(card, 490, 600)]
    assert set(rec["targets"][0]) == {"key", "target", "measured", "met", "margin", "stderr"}
    section = targets_section(card, FULL, 490, complete=True)
    assert f"{rec['met']} of {rec['checked']} targets met." in section
    for t in rec["targets"]:
        margin = "-" if t["margin"] is None else f"{t['margin']:+.3g}"
        row = f"| {t['target']} | {t['measured']} | {margin} | {'-' if t['met'] is None else 'yes' if t['met'] else 'no'} |"
        assert row in section
    assert rec["note"] == section[-1]
    quick = targets_record(card, QUICK, 75, complete=True, seed=0)
    assert quick["scope"] == "smoke_test" and [t["key"] for t in quick["targets"]] == ["time"]
    assert quick["met"] == quick["checked"] == 1
    partial = targets_record(card, FULL, 100, complete=False, seed=0)
    assert partial["scope"] == "comparison" and "time" not in [t["key"] for t in partial["targets"]]
    assert targets_record(card, replace(FULL, world_preset="hard"), 490, True, 0)["scope"] == "comparison"


def test_margins_with_standard_errors_name_the_misses_within_noise():
    from xgenmm.demo.pipeline import targets_record, targets_section
    from xgenmm.demo.presets import FULL
    from xgenmm.demo.targets import near_misses

    card = full_card(**{"sft_single/world_vqa": 0.895, "dpo/preference_accuracy": 0.93})
    stderrs = {"vqa": 0.012, "few_shot_vqa": 0.008, "dpo_preference": 0.004, "time": 99.0}
    checks = {c.key: c for c in check_targets(card, 490, 600)}
    assert checks["vqa"].margin == pytest.approx(-0.005) and checks["drop"].margin == pytest.approx(0.02 - (0.895 - 0.927))
    assert checks["dpo_hallucination"].margin == pytest.approx(0.01)  # down is the good direction
    assert checks["time"].margin is None
    section = targets_section(card, FULL, 490, complete=True, stderrs=stderrs)
    assert "| single-image SFT: world VQA >= 0.90 | 0.895 | -0.005 ± 0.012 | no |" in section
    assert "| wall time within 10 min | 8:10 | - | yes |" in section  # the time check has no margin
    # vqa: 0.4 SE short; preference: 0.005 / 0.004 = 1.3 SE short; few-shot VQA: 0.036 / 0.008 = 4.5 SE short
    line = next(x for x in section if x.startswith("Missed by less than two standard errors"))
    assert "single-image SFT: world VQA >= 0.90 (0.4 SE)" in line and "DPO: preference accuracy up (1.3 SE)" in line
    assert "4-shot VQA" not in line
    scored = [replace(c, stderr=stderrs.get(c.key)) for c in checks.values()]
    assert [c.key for c in near_misses(scored)] == ["vqa", "dpo_preference"]
    rec = targets_record(card, FULL, 490, complete=True, seed=0, stderrs=stderrs)
    by_key = {t["key"]: t for t in rec["targets"]}
    assert by_key["vqa"]["stderr"] == 0.012 and by_key["time"]["stderr"] is None and by_key["multi"]["stderr"] is None
    assert by_key["vqa"]["margin"] == -0.005  # rounded to six significant digits, not 0.895 - 0.9's float
