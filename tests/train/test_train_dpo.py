"""DPO pieces: the sigmoid loss and its reference (the policy with adapters off), the LoRA
merge, the second round's pairs made from answers on noised images, and the pairs mined for
the model's own mistakes."""

from __future__ import annotations

import json

import pytest
import torch
from trainhelpers import tiny_config

from xgenmm.train import run_stage
from xgenmm.train.config import LoraSection, TrainableSection
from xgenmm.train.lora import merge_lora_state
from xgenmm.train.losses import dpo_loss, sequence_logps
from xgenmm.train.noise_pairs import NoisePairsConfig, alpha_bar, build_noised_pairs, noise_pixels
from xgenmm.train.trainable import apply_trainable


def _pair_batch(proc, ids_a: str, ids_b: str) -> dict:
    from xgenmm.data.collate import pair_batch
    from xgenmm.data.encode import Encoder
    from xgenmm.data.samples import PreferenceSample, Turn

    enc = Encoder(proc).encode(PreferenceSample("p0", [Turn("user", "what colour is the circle?")], [], ids_a, ids_b))
    return pair_batch([enc], proc.pad_token_id)


def test_dpo_loss_uses_the_policy_with_adapters_off_as_reference(tiny_model, tiny_processor):
    lora = LoraSection(enabled=True, r=4, alpha=8.0, dropout=0.0, target_modules=["qkv_proj", "o_proj"])
    model = apply_trainable(tiny_model, TrainableSection(vision_tokenizer=False, lang_model=False), lora)
    batch = _pair_batch(tiny_processor, "yes", "no")
    out = dpo_loss(model, batch, beta=0.5, reference_context=model.lang_model.disable_adapter)
    assert out.loss_sum.item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-6)  # B = 0 at init
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    policy, _ = sequence_logps(model, batch)
    with model.lang_model.disable_adapter():
        reference, _ = sequence_logps(model, batch)
    out = dpo_loss(model, batch, beta=0.5, reference_context=model.lang_model.disable_adapter)
    logit = 0.5 * ((policy[0] - reference[0]) - (policy[1] - reference[1]))
    assert out.loss_sum.item() == pytest.approx(-torch.nn.functional.logsigmoid(logit).item(), rel=1e-5)
    out.loss_sum.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "lora_B" in n)
    # RPO: the chosen answer's per-token NLL, weighted, on top of the DPO term.
    rpo = dpo_loss(model, batch, beta=0.5, reference_context=model.lang_model.disable_adapter, sft_weight=0.7)
    n_chosen = int((batch["labels"][0] != -100).sum())
    assert n_chosen >= 1
    expected = -torch.nn.functional.logsigmoid(logit).item() + 0.7 * (-policy[0].item() / n_chosen)
    assert rpo.loss_sum.item() == pytest.approx(expected, rel=1e-5)


def test_sequence_logps_sum_the_answer_tokens(tiny_model, tiny_processor):
    batch = _pair_batch(tiny_processor, "yes", "the word is cat")
    logps, _ = sequence_logps(tiny_model, batch)
    for row in range(2):
        one = {k: (v[row:row + 1] if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        out = tiny_model(**{k: one[k] for k in ("input_ids", "attention_mask", "labels")}, pixel_values=[], image_sizes=[])
        assert logps[row].item() == pytest.approx(-(out.loss * out.num_supervised).item(), rel=1e-5)


def test_merged_lora_state_equals_peft_merge_and_unload(tiny_model, tiny_config):
    from xgenmm.model import XGenMM

    lora = LoraSection(enabled=True, r=4, alpha=8.0, target_modules=["qkv_proj", "gate_up_proj"])
    model = apply_trainable(tiny_model, TrainableSection(lang_model=False), lora)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    merged = merge_lora_state(model.state_dict(), lora.alpha / lora.r)
    model.lang_model = model.lang_model.merge_and_unload()
    expected = model.state_dict()
    assert merged.keys() == expected.keys()
    for k in expected:
        torch.testing.assert_close(merged[k], expected[k], rtol=1e-5, atol=1e-6)
    XGenMM(tiny_config).load_state_dict(merged, strict=True)


def test_noising_follows_the_diffusion_forward_process():
    assert alpha_bar(0) == 1.0 and alpha_bar(1000) < 1e-4
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    g = torch.Generator().manual_seed(0)
    assert torch.equal(noise_pixels(x, 0, g), x)
    heavy = noise_pixels(x, 1000, torch.Generator().manual_seed(0))
    assert abs(float(heavy.std()) - 1.0) < 0.2 and float(torch.corrcoef(torch.stack([heavy.flatten(), x.flatten()]))[0, 1]) < 0.2


def test_noised_pairs_keep_prompt_and_chosen_and_load_as_preference_data(world, tmp_path):
    from xgenmm.data.parse import parse_record
    from xgenmm.data.samples import PreferenceSample
    from xgenmm.data.sources import JsonlSource, SourceConfig

    sft = run_stage(tiny_config(world, tmp_path / "sft", "sft", steps=1))
    out = tmp_path / "round2.jsonl"
    counts = build_noised_pairs(NoisePairsConfig(model=str(sft), source=str(world / "dpo" / "pairs.jsonl"), out=str(out),
                                                 noise_step=800, max_new_tokens=6, batch_size=4, limit=6,
                                                 keep_identical=True))
    assert counts["read"] == 6 and counts["written"] + counts["empty"] == 6 and counts["written"] > 0
    originals = {json.loads(line)["id"]: json.loads(line) for line in (world / "dpo" / "pairs.jsonl").read_text().splitlines()}
    src = JsonlSource(SourceConfig(path=str(out)))
    for i in range(len(src)):
        item = src.item(i)
        rec = item.record()
        sample = parse_record(rec, item.id, item.resolve)
        assert isinstance(sample, PreferenceSample)
        original = originals[rec["id"].removesuffix(":noised")]
        assert sample.chosen == original["chosen"] and sample.prompt[-1].text == original["prompt"]
        sample.images[0].load()


@pytest.fixture(scope="module")
def sft_model_dir(world, tmp_path_factory):
    return run_stage(tiny_config(world, tmp_path_factory.mktemp("mine") / "sft", "sft", steps=1))


def _alone_margins(model_dir, pairs_path) -> dict[str, float]:
    """Each pair's chosen-minus-rejected log-probability, one pair per forward pass."""
    from xgenmm.data.collate import pair_batch
    from xgenmm.data.encode import Encoder
    from xgenmm.data.parse import parse_record
    from xgenmm.data.sources import JsonlSource, SourceConfig
    from xgenmm.model import XGenMM, XGenMMProcessor

    model, proc = XGenMM.from_pretrained(model_dir).eval(), XGenMMProcessor.from_pretrained(model_dir)
    src = JsonlSource(SourceConfig(path=str(pairs_path)))
    out = {}
    with torch.no_grad():
        for i in range(len(src)):
            item = src.item(i)
            sample = parse_record(item.record(), item.id, item.resolve, kind="preference")
            logps, _ = sequence_logps(model, pair_batch([Encoder(proc).encode(sample)], proc.pad_token_id))
            out[sample.id] = float(logps[0] - logps[1])
    return out


def test_mined_pairs_are_those_ranked_below_the_margin_in_source_order(world, sft_model_dir, tmp_path):
    from xgenmm.data.parse import parse_record
    from xgenmm.data.samples import PreferenceSample
    from xgenmm.data.sources import JsonlSource, SourceConfig
    from xgenmm.train.mine_pairs import MinePairsConfig, mine_pairs

    pairs = world / "dpo" / "pairs.jsonl"
    alone = _alone_margins(sft_model_dir, pairs)
    ids = [json.loads(line)["id"] for line in pairs.read_text().splitlines()]
    every = mine_pairs(MinePairsConfig(str(sft_model_dir), str(pairs), str(tmp_path / "all.jsonl"), max_margin=1e9,
                                       batch_size=5), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert every == {"read": 12, "scored": 12, "kept": 12, "skipped": 0, "ranked_right": sum(m > 0 for m in alone.values())}
    assert [r["id"] for r in rows] == ids  # batched scoring, source order kept
    for r in rows:
        assert r["margin"] == pytest.approx(alone[r["id"]], abs=1e-3)
    ranked = sorted(alone.values())
    cut = (ranked[4] + ranked[5]) / 2  # five pairs below, clear of float noise between batch layouts
    some = mine_pairs(MinePairsConfig(str(sft_model_dir), str(pairs), str(tmp_path / "some.jsonl"), max_margin=cut),
                      progress=False)
    kept = [json.loads(line) for line in (tmp_path / "some.jsonl").read_text().splitlines()]
    assert some["kept"] == 5 and [r["id"] for r in kept] == [i for i in ids if alone[i] < cut]
    originals = {json.loads(line)["id"]: json.loads(line) for line in pairs.read_text().splitlines()}
    assert all(r["kind"] == originals[r["id"]]["kind"] for r in kept)  # the source's other fields carried over
    src = JsonlSource(SourceConfig(path=str(tmp_path / "some.jsonl")))
    for i in range(len(src)):  # the kept pairs load as preference data, unchanged
        item = src.item(i)
        sample = parse_record(item.record(), item.id, item.resolve, kind="preference")
        original = originals[sample.id]
        assert isinstance(sample, PreferenceSample) and sample.prompt[-1].text == original["prompt"]
        assert (sample.chosen, sample.rejected) == (original["chosen"], original["rejected"])
        sample.images[0].load()


def test_mining_skips_bad_pairs_and_refuses_to_keep_nothing(world, sft_model_dir, tmp_path, caplog):
    from xgenmm.cli import main
    from xgenmm.train.mine_pairs import MinePairsConfig, mine_pairs

    lines = (world / "dpo" / "pairs.jsonl").read_text().splitlines()
    bad = dict(json.loads(lines[1]), image="images/nowhere.png")
    src = tmp_path / "pairs.jsonl"
    src.write_text("\n".join([lines[0], json.dumps(bad), '{"id": "cut', *lines[2:4]]) + "\n")
    (tmp_path / "images").symlink_to(world / "dpo" / "images")
    counts = mine_pairs(MinePairsConfig(str(sft_model_dir), str(src), str(tmp_path / "kept.jsonl"), max_margin=1e9),
                        progress=False)
    assert counts["read"] == 5 and counts["skipped"] == 2 and counts["kept"] == 3
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(bad["id"] in m and "missing_image" in m for m in warned)
    assert any("pairs.jsonl:line 3" in m and "bad_json" in m for m in warned)
    from xgenmm.train.mine_pairs import NoPairsKept

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "cut\n' + json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match="no preference pair could be read") as err:
        mine_pairs(MinePairsConfig(str(sft_model_dir), str(broken), str(tmp_path / "none.jsonl")), progress=False)
    assert not isinstance(err.value, NoPairsKept)
    with pytest.raises(NoPairsKept, match="none of 12 pairs has a margin below"):
        mine_pairs(MinePairsConfig(str(sft_model_dir), str(world / "dpo" / "pairs.jsonl"), str(tmp_path / "none.jsonl"),
                                   max_margin=-1e9), progress=False)
    assert not (tmp_path / "none.jsonl").exists()
    rc = main(["train", "mine-pairs", "--model", str(sft_model_dir), "--data", str(world / "dpo" / "pairs.jsonl"),
               "--out", str(tmp_path / "cli.jsonl"), "--max-margin=-1e9"])
    assert rc == 1
    rc = main(["train", "mine-pairs", "--model", str(sft_model_dir), "--data", str(world / "dpo" / "pairs.jsonl"),
               "--out", str(tmp_path / "cli.jsonl")])
    assert rc == 0 and (tmp_path / "cli.jsonl").is_file()


# ---- the final model chosen by held-out preference accuracy (dpo.select_source) --------------

def _split_pairs(world, tmp_path, reverse_held_out: bool) -> tuple[str, str]:
    """The world's 12 pairs: the first 8 to train on, the last 4 held out (with chosen and
    rejected swapped when `reverse_held_out`: what DPO teaches on the others then counts against
    them, so the model the stage started from is the best on them)."""
    rows = [json.loads(line) for line in (world / "dpo" / "pairs.jsonl").read_text().splitlines()]
    for r in rows:
        r["image"] = str((world / "dpo" / r["image"]).resolve())
    held = rows[8:] if not reverse_held_out else [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in rows[:4]]
    train, select = tmp_path / "train.jsonl", tmp_path / "select.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows[:8]))
    select.write_text("".join(json.dumps(r) + "\n" for r in held))
    return str(train), str(select)


def _selecting_config(world, sft_model_dir, run_dir, train, select, steps, **extra):
    return tiny_config(world, run_dir, "dpo", steps=steps, **{
        "model.checkpoint": str(sft_model_dir), "model.preset": None, "model.tokenizer": None,
        "model.preset_overrides": {}, "data.source": train, "dpo.select_source": select, "dpo.select_every": 2,
        "optim.lr": 5e-2, "schedule.kind": "constant", "schedule.warmup_steps": 0, **extra})


ON_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=ON_CUDA)])
def test_the_final_model_is_the_step_with_the_best_held_out_preference_accuracy(world, sft_model_dir, tmp_path, device):
    """On a GPU (fp32, so that the margins recorded there and those recomputed here on the CPU
    agree) the evaluations run on the device and the chosen adapters come back from it."""
    train, select = _split_pairs(world, tmp_path, reverse_held_out=False)
    final = run_stage(_selecting_config(world, sft_model_dir, tmp_path / "dpo", train, select, steps=5,
                                        **{"runtime.device": device, "runtime.precision": "fp32"}))
    sel = json.loads((tmp_path / "dpo" / "selection.json").read_text())
    assert [h["step"] for h in sel["history"]] == [0, 2, 4, 5]  # before training, every 2 steps, the last
    start = _alone_margins(sft_model_dir, select)
    first = sel["history"][0]
    assert first["pairs"] == 4 and first["accuracy"] == sum(m > 0 for m in start.values()) / 4
    assert first["margin"] == pytest.approx(sum(start.values()) / 4, abs=1e-3)
    best = max(h["accuracy"] for h in sel["history"])
    assert sel["selected"] == next(h for h in sel["history"] if h["accuracy"] == best)  # the earliest of equals
    # the final model is that step's: its margins on the held-out pairs are the ones recorded then
    got = _alone_margins(final, select)
    assert sum(got.values()) / 4 == pytest.approx(sel["selected"]["margin"], abs=1e-3)
    assert sum(m > 0 for m in got.values()) / 4 == sel["selected"]["accuracy"]
    summary = json.loads((tmp_path / "dpo" / "summary.json").read_text())
    assert summary["selected_step"] == sel["selected"]["step"] and summary["step"] == 5


def test_when_dpo_only_lowers_held_out_accuracy_the_final_model_is_the_starting_one(world, sft_model_dir, tmp_path):
    from xgenmm.model import XGenMM

    train, select = _split_pairs(world, tmp_path, reverse_held_out=True)
    final = run_stage(_selecting_config(world, sft_model_dir, tmp_path / "dpo", train, select, steps=4))
    sel = json.loads((tmp_path / "dpo" / "selection.json").read_text())
    assert sel["history"][-1]["margin"] < sel["history"][0]["margin"]  # DPO did move the model, the wrong way here
    assert sel["selected"]["step"] == 0
    start, got = XGenMM.from_pretrained(sft_model_dir).state_dict(), XGenMM.from_pretrained(final).state_dict()
    assert all(torch.equal(v, start[k]) for k, v in got.items())  # adapters back at zero: the merge changes nothing


def test_a_resumed_selecting_stage_chooses_as_an_uninterrupted_one(world, sft_model_dir, tmp_path):
    """Stopped after its step-2 checkpoint and resumed, the stage restores the evaluations and
    the best step's weights from that checkpoint (the best, step 0, is never in memory again)."""
    from xgenmm.model import XGenMM
    from xgenmm.train.select import BEST_FILE

    train, select = _split_pairs(world, tmp_path, reverse_held_out=True)
    every = {"checkpoint.every_steps": 1, "checkpoint.keep_last": 1, "dpo.select_every": 1}
    whole = run_stage(_selecting_config(world, sft_model_dir, tmp_path / "whole", train, select, steps=4, **every))
    run_stage(_selecting_config(world, sft_model_dir, tmp_path / "parts", train, select, steps=2, **every))
    assert (tmp_path / "parts" / "checkpoints" / "step-00000002" / BEST_FILE).is_file()
    parts = run_stage(_selecting_config(world, sft_model_dir, tmp_path / "parts", train, select, steps=4, **every))
    a, b = (json.loads((tmp_path / r / "selection.json").read_text()) for r in ("whole", "parts"))
    assert [h["step"] for h in b["history"]] == [0, 1, 2, 3, 4]
    assert b["selected"] == a["selected"] and a["selected"]["step"] == 0
    for x, y in zip(a["history"], b["history"]):
        assert x["accuracy"] == y["accuracy"] and x["margin"] == pytest.approx(y["margin"], abs=1e-5)
    sa, sb = XGenMM.from_pretrained(whole).state_dict(), XGenMM.from_pretrained(parts).state_dict()
    assert all(torch.equal(v, sb[k]) for k, v in sa.items())


def test_selection_pairs_that_cannot_be_read_are_an_error_naming_the_file(world, sft_model_dir, tmp_path):
    train, _ = _split_pairs(world, tmp_path, reverse_held_out=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "prompt": "Is there a cat?"}) + "\n")  # no chosen / rejected
    with pytest.raises(ValueError, match=f"dpo.select_source {bad}: no preference pair could be read"):
        run_stage(_selecting_config(world, sft_model_dir, tmp_path / "dpo", train, str(bad), steps=2))
