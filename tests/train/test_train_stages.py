"""Every stage end to end on the tiny world: what a run leaves behind, that its output is the
next stage's input, and the DPO reference being the policy with its adapters off."""

from __future__ import annotations

import json

import torch
from trainhelpers import losses, tiny_config

from xgenmm.model import XGenMM, XGenMMProcessor
from xgenmm.train import run_stage
from xgenmm.train.metrics import read_metrics


def test_sft_run_writes_final_model_metrics_curves_and_resolved_config(world, tmp_path):
    cfg = tiny_config(world, tmp_path / "sft", "sft", steps=3, **{"logging.tensorboard": True, "logging.plot": True})
    final = run_stage(cfg)
    assert final == tmp_path / "sft" / "final"
    model = XGenMM.from_pretrained(final)
    proc = XGenMMProcessor.from_pretrained(final)
    assert proc.image_token_id == model.config.tokens.image_token_id
    rows = read_metrics(cfg.run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for key in ("loss", "lr", "grad_norm", "tokens_per_s", "samples_per_s", "mfu", "data_wait_share",
                "padding_fraction", "peak_memory_gb"):
        assert all(isinstance(r[key], float) for r in rows), key
    assert rows[-1]["data"]["ok"] >= 6 and "skipped" in rows[-1]["data"]
    assert 0 < rows[0]["mfu"] < 1
    run = tmp_path / "sft"
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    saved = (run / "config.yaml").read_text()
    assert "stage: sft" in saved and "max_steps: 3" in saved
    manifest = json.loads((run / "trainable.json").read_text())
    assert manifest["modules"]["vision_encoder"]["trainable"] == 0  # frozen by default
    assert manifest["modules"]["vision_tokenizer.latents"]["frozen"] == 0


def test_pretrain_reads_a_caption_and_document_mixture_at_fixed_resolution(world, tmp_path):
    cfg = tiny_config(world, tmp_path / "pre", "pretrain", steps=2)
    final = run_stage(cfg)
    assert XGenMMProcessor.from_pretrained(final).image_processor.mode == "squash"
    assert len(losses(cfg.run_dir)) == 2


def test_dpo_starts_at_log2_and_merges_its_adapters_into_a_plain_model(world, tmp_path):
    sft = run_stage(tiny_config(world, tmp_path / "sft", "sft", steps=1))
    cfg = tiny_config(world, tmp_path / "dpo", "dpo", steps=2, **{
        "model.checkpoint": str(sft), "model.preset": None, "model.tokenizer": None, "model.preset_overrides": {},
        "optim.lr": 5e-2, "checkpoint.every_steps": 1})
    final = run_stage(cfg)
    rows = read_metrics(cfg.run_dir)
    # LoRA's B starts at zero: policy == reference, every pair's logit is 0.
    assert abs(rows[0]["loss"] - torch.log(torch.tensor(2.0)).item()) < 1e-5
    assert rows[0]["dpo/margin"] == 0.0
    assert {"dpo/accuracy", "dpo/reward_chosen", "dpo/reward_rejected"} <= set(rows[1])
    manifest = json.loads((tmp_path / "dpo" / "trainable.json").read_text())
    assert manifest["modules"]["lang_model.lora"]["trainable"] > 0
    assert manifest["modules"]["lang_model.layers"]["trainable"] == 0
    merged = XGenMM.from_pretrained(final)
    base = XGenMM.from_pretrained(sft)
    changed = [k for k, v in merged.state_dict().items() if not torch.equal(v, base.state_dict()[k])]
    assert changed and all(any(t in k for t in ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")) for k in changed)


def test_merge_lora_command_equals_the_merged_final(world, tmp_path):
    from xgenmm.cli import main

    sft = run_stage(tiny_config(world, tmp_path / "sft", "sft", steps=1))
    cfg = tiny_config(world, tmp_path / "safety", "safety", steps=2, **{
        "model.checkpoint": str(sft), "model.preset": None, "model.tokenizer": None, "model.preset_overrides": {},
        "optim.lr": 5e-2})
    final = run_stage(cfg)
    assert main(["train", "merge-lora", str(tmp_path / "safety"), str(tmp_path / "merged")]) == 0
    a, b = XGenMM.from_pretrained(final).state_dict(), XGenMM.from_pretrained(tmp_path / "merged").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "merged" / "tokenizer.json").exists()


def test_lora_on_the_lm_head_trains_and_merges_into_the_head(world, tmp_path):
    """The demo's safety stage adapts the LM head too (configs/demo/safety.yaml): the refusal's
    words appear in no earlier text, and with the head frozen their rows stay where pretraining
    pushed them (the refusal stayed at a loss of ~3.5 a token). The head's adapter must train
    and merge into the head like the layers' do, its bias untouched."""
    sft = run_stage(tiny_config(world, tmp_path / "sft", "sft", steps=1))
    cfg = tiny_config(world, tmp_path / "safety", "safety", steps=2, **{
        "model.checkpoint": str(sft), "model.preset": None, "model.tokenizer": None, "model.preset_overrides": {},
        "optim.lr": 5e-2, "lora.target_modules": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj", "lm_head"]})
    final = run_stage(cfg)
    merged, base = XGenMM.from_pretrained(final).state_dict(), XGenMM.from_pretrained(sft).state_dict()
    changed = {k for k, v in merged.items() if not torch.equal(v, base[k])}
    assert "lang_model.lm_head.weight" in changed and "lang_model.lm_head.bias" not in changed
    assert not any("embed_tokens" in k or "norm" in k for k in changed)
