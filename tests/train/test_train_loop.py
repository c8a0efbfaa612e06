"""The training step: gradient accumulation, non-finite losses, the first-step check, and
the trainable parts / optimiser groups it is built from."""

from __future__ import annotations

import json
import math

import pytest
import torch
from trainhelpers import losses, tiny_config

from xgenmm.train import run_stage
from xgenmm.train.config import OptimSection, ScheduleSection
from xgenmm.train.loop import Hooks, TrainingDiverged
from xgenmm.train.optim import lr_factor, param_groups
from xgenmm.train.trainable import apply_trainable, fingerprint, manifest, verify_first_step


def test_grad_accumulation_matches_one_big_batch(world, tmp_path):
    run_stage(tiny_config(world, tmp_path / "big", "sft", 2, **{"data.batch.batch_size": 4}))
    run_stage(tiny_config(world, tmp_path / "accum", "sft", 2, **{"data.batch.batch_size": 2, "optim.grad_accum": 2}))
    big, accum = losses(tmp_path / "big"), losses(tmp_path / "accum")
    assert big == pytest.approx(accum, rel=1e-5)


def _poison(step_to_poison: int):
    def on_batch(step: int, batch: dict) -> None:
        if step == step_to_poison - 1:  # hooks see the 0-based step being computed
            batch["pixel_values"] = [torch.full_like(p, float("nan")) for p in batch["pixel_values"]]
    return on_batch


def test_nan_loss_stops_with_a_checkpoint_and_a_message(world, tmp_path):
    cfg = tiny_config(world, tmp_path / "run", "sft", 4)
    with pytest.raises(TrainingDiverged, match="non-finite loss at step 2") as e:
        run_stage(cfg, Hooks(on_batch=_poison(2)))
    assert "checkpoint" in str(e.value)
    assert (tmp_path / "run" / "checkpoints" / "step-00000001" / "model.safetensors").exists()


def test_nan_loss_is_skipped_when_configured(world, tmp_path):
    cfg = tiny_config(world, tmp_path / "run", "sft", 3, nan_policy="skip")
    run_stage(cfg, Hooks(on_batch=_poison(2)))
    got = losses(tmp_path / "run")
    assert sorted(got) == [1, 3] and all(math.isfinite(v) for v in got.values())


def test_first_step_check_catches_a_frozen_weight_that_moved(tiny_model):
    from xgenmm.train.config import LoraSection, TrainableSection

    model = apply_trainable(tiny_model, TrainableSection(), LoraSection())
    before = fingerprint(model)
    with torch.no_grad():
        model.vision_encoder.tower.post_layernorm.weight.add_(1.0)  # frozen by default
    with pytest.raises(RuntimeError, match="frozen weights moved.*post_layernorm"):
        verify_first_step(model, before, had_grad=set())


def test_lora_trains_only_adapters_on_the_named_llm_modules(tiny_model):
    from xgenmm.train.config import LoraSection, TrainableSection

    lora = LoraSection(enabled=True, r=4, alpha=8.0, target_modules=["qkv_proj", "down_proj"])
    model = apply_trainable(tiny_model, TrainableSection(vision_tokenizer=False, lang_model=False), lora)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and ("qkv_proj" in n or "down_proj" in n) for n in trainable)
    m = manifest(model)
    assert m["trainable"] == m["modules"]["lang_model.lora"]["trainable"]
    with pytest.raises(ValueError, match="not linear layers of the LLM"):
        apply_trainable(tiny_model, TrainableSection(lang_model=False), LoraSection(enabled=True, target_modules=["q_proj"]))


def test_weight_decay_skips_norms_biases_latents_and_embeddings(tiny_model):
    groups = param_groups(tiny_model, OptimSection(weight_decay=0.1))
    decay = {n for g in groups if g["weight_decay"] > 0 for n in g["names"]}
    no_decay = {n for g in groups if g["weight_decay"] == 0 for n in g["names"]}
    assert "vision_tokenizer.latents" in no_decay
    assert "lang_model.model.embed_tokens.weight" in no_decay
    assert "lang_model.model.norm.weight" in no_decay and "vision_tokenizer.norm.bias" in no_decay
    assert "lang_model.lm_head.bias" in no_decay
    assert "lang_model.model.layers.0.self_attn.qkv_proj.weight" in decay
    assert "vision_tokenizer.layers.0.1.1.weight" in decay
    assert not any(n.startswith("vision_encoder") for n in decay | no_decay)  # frozen: not optimised


def test_lr_scale_gives_a_module_its_own_learning_rate(tiny_model):
    from xgenmm.train.optim import build_optimizer, build_scheduler

    cfg = OptimSection(lr=1e-3, weight_decay=0.1, lr_scale={"vision_tokenizer": 0.1, "vision_tokenizer.projection": 0.5})
    groups = param_groups(tiny_model, cfg)
    lr_of = {n: g.get("lr", cfg.lr) for g in groups for n in g["names"]}
    assert lr_of["vision_tokenizer.latents"] == pytest.approx(1e-4)
    assert lr_of["vision_tokenizer.projection.weight"] == pytest.approx(5e-4)  # the longer prefix wins
    assert lr_of["lang_model.model.layers.0.self_attn.qkv_proj.weight"] == 1e-3
    assert "lr" not in groups[0]  # the base-lr groups come first: the logged lr is the peak lr
    assert {n for g in groups for n in g["names"]} == {n for n, p in tiny_model.named_parameters() if p.requires_grad}
    # The schedule scales every group's own peak.
    opt = build_optimizer(tiny_model, cfg)
    sched = build_scheduler(opt, ScheduleSection(max_steps=10, warmup_steps=2))
    assert sorted(set(sched.base_lrs)) == pytest.approx([1e-4, 5e-4, 1e-3])
    assert sorted({g["lr"] for g in opt.param_groups}) == pytest.approx([0.5e-4, 2.5e-4, 0.5e-3])  # warmup step 1 of 2
    with pytest.raises(ValueError, match=r"optim.lr_scale: \['vision_tower'\] name no parameter of the model"):
        param_groups(tiny_model, OptimSection(lr_scale={"vision_tower": 0.1}))
    frozen = param_groups(tiny_model, OptimSection(lr_scale={"vision_encoder": 0.1}))  # frozen: nothing to scale
    assert all("lr" not in g for g in frozen)
    with pytest.raises(ValueError, match="optim.lr_scale.vision_tokenizer: expected a positive number"):
        param_groups(tiny_model, OptimSection(lr_scale={"vision_tokenizer": 0}))


def test_schedule_warms_up_linearly_then_follows_a_cosine():
    s = ScheduleSection(max_steps=10, warmup_steps=2, kind="cosine", min_lr_ratio=0.1)
    assert [lr_factor(i, s) for i in (0, 1)] == [0.5, 1.0]
    assert lr_factor(2, s) == pytest.approx(1.0)
    assert lr_factor(6, s) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the cosine
    assert lr_factor(10, s) == pytest.approx(0.1)


def test_activation_checkpointing_gives_the_same_losses(world, tmp_path):
    run_stage(tiny_config(world, tmp_path / "plain", "sft", 2))
    run_stage(tiny_config(world, tmp_path / "ckpt", "sft", 2, **{"runtime.activation_checkpointing": True}))
    assert losses(tmp_path / "plain") == pytest.approx(losses(tmp_path / "ckpt"), rel=1e-5)
    from xgenmm.model import XGenMM

    XGenMM.from_pretrained(tmp_path / "ckpt" / "final")  # plain keys, no wrapper prefixes


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_the_sample_and_image_token_caches_leave_the_losses_unchanged(world, tmp_path, stage):
    """Three epochs of a stage with frozen vision parts: in memory, the later epochs neither
    re-encode a sample nor re-run the vision side, and train exactly as before (to the float
    rounding of a different batching of the vision forward)."""
    common = {"trainable.vision_tokenizer": False, "data.batch.batch_size": 4}
    steps = 18 if stage == "sft" else 9  # 24 conversations / 12 pairs, 4 per batch: three epochs
    run_stage(tiny_config(world, tmp_path / "plain", stage, steps, **common))
    run_stage(tiny_config(world, tmp_path / "samples", stage, steps, **common, **{"data.cache_mb": 64}))
    run_stage(tiny_config(world, tmp_path / "tokens", stage, steps, **common,
                          **{"data.cache_mb": 64, "runtime.image_token_cache": True}))
    plain = losses(tmp_path / "plain")
    assert len(plain) == steps
    assert losses(tmp_path / "samples") == plain
    assert losses(tmp_path / "tokens") == pytest.approx(plain, rel=1e-5)


def test_answer_spans_are_the_runs_of_supervised_targets():
    from xgenmm.train.losses import answer_spans

    x = -100
    labels = torch.tensor([[5, x, 7, 8, x, 9, x],    # targets (labels[:, 1:]): two answers, 7 8 and 9
                           [x, 4, 4, 4, x, x, 6]])   # one of three tokens, one of one
    ids, n = answer_spans(labels)
    assert n == 4
    assert ids.tolist() == [0, 0, 1, 2, 2, 2, 3]


def test_answer_weighting_averages_each_answer_then_the_answers(tiny_model, tiny_processor):
    """Each answer counts once, whatever its length: the loss is the mean over answers of the
    mean over each answer's tokens, computed here from the full logits."""
    import torch.nn.functional as F

    from tests.conftest import make_image
    from xgenmm.train.losses import answer_spans, lm_loss

    batch = tiny_processor(["<image>\nwhat colour is the circle? red", "how many shapes are there? three of them"],
                           [[make_image(40, 30)], []], padding_side="right")
    labels = torch.full_like(batch["input_ids"], -100)
    n0, n1 = (int(m.sum()) for m in batch["attention_mask"])
    labels[0, n0 - 1] = batch["input_ids"][0, n0 - 1]  # a one-token answer
    labels[1, n1 - 3:n1] = batch["input_ids"][1, n1 - 3:n1]  # a three-token answer
    labels[1, 3:5] = batch["input_ids"][1, 3:5]  # and a two-token one earlier in the row
    batch["labels"] = labels
    token = lm_loss(tiny_model, batch, "token")
    answer = lm_loss(tiny_model, batch, "answer")
    assert (token.units, answer.units) == (6, 3)
    logits = tiny_model(**batch).logits
    fused = tiny_model(**batch).labels
    ce = F.cross_entropy(logits[:, :-1].flatten(0, 1), fused[:, 1:].flatten(), reduction="none", ignore_index=-100)
    ce = ce.view(fused.shape[0], -1)[fused[:, 1:] != -100]
    ids, _ = answer_spans(batch["labels"])
    per_answer = torch.stack([ce[ids == k].mean() for k in range(3)])
    assert float(answer.loss_sum) == pytest.approx(float(per_answer.sum()), rel=1e-5)
    assert float(token.loss_sum) == pytest.approx(float(ce.sum()), rel=1e-5)


def conversations(world) -> str:
    """Single-image SFT data in the conversation form (an image's questions as the turns of
    one conversation), so that rows hold several answers of different lengths."""
    path = world / "sft" / "single_conversations.json"
    assert len(json.loads(path.read_text())) == 24
    return str(path)


def test_answer_weighting_is_the_same_however_the_batch_is_split(world, tmp_path):
    answer = {"optim.loss_weighting": "answer", "data.source": conversations(world)}
    run_stage(tiny_config(world, tmp_path / "big", "sft", 2, **{**answer, "data.batch.batch_size": 4}))
    run_stage(tiny_config(world, tmp_path / "accum", "sft", 2,
                          **{**answer, "data.batch.batch_size": 2, "optim.grad_accum": 2}))
    run_stage(tiny_config(world, tmp_path / "token", "sft", 2,
                          **{"data.batch.batch_size": 4, "data.source": answer["data.source"]}))
    big, accum, token = losses(tmp_path / "big"), losses(tmp_path / "accum"), losses(tmp_path / "token")
    assert big == pytest.approx(accum, rel=1e-5)
    # a different average of the same batch: how different depends on the batch's answer lengths
    # (5e-4 relative on the small world, whose existence drills add many one-token answers),
    # while `big` and `accum`, the same average computed two ways, agree to 1e-5
    assert big[1] != pytest.approx(token[1], rel=1e-4)


def test_a_skipped_step_still_gets_its_checkpoint_and_hook(world, tmp_path):
    from xgenmm.train.checkpoint import list_checkpoints

    seen = []
    cfg = tiny_config(world, tmp_path / "run", "sft", 4, nan_policy="skip", **{"checkpoint.every_steps": 2,
                                                                              "checkpoint.keep_last": 5})
    run_stage(cfg, Hooks(on_batch=_poison(2), on_step_end=lambda step, m: seen.append(step)))
    assert [s for s, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [2, 4]
    assert seen == [1, 2, 3, 4]


def test_image_position_embeddings_are_embeddings_for_weight_decay(tiny_tokenizer):
    from xgenmm.model import XGenMM
    from xgenmm.model.presets import preset_config

    model = XGenMM(preset_config("tiny", tokenizer=tiny_tokenizer, resampler={"image_positions": 2,
                                                                              "group_positions": 3}))
    groups = param_groups(model, OptimSection(weight_decay=0.1))
    no_decay = {n for g in groups if g["weight_decay"] == 0 for n in g["names"]}
    assert {"vision_tokenizer.image_pos", "vision_tokenizer.group_pos"} <= no_decay
