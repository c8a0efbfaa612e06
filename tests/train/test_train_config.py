"""The training config: YAML + overrides into typed dataclasses, every problem reported at
once before any compute, and the example configs of configs/ valid."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from xgenmm.train.config import ConfigError, TrainConfig, load_config

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_keys_wrong_types_and_missing_paths_are_reported_together(tmp_path):
    path = write(tmp_path, {
        "stage": "sft",
        "model": {"preset": "tiny", "tokenizer": str(tmp_path / "no-tokenizer")},
        "data": {"source": str(tmp_path / "missing.json"), "batch": {"batch_size": "eight"}},
        "optim": {"lr": 1e-4, "warmpu": 3},
        "shedule": {"max_steps": 10},
    })
    with pytest.raises(ConfigError) as e:
        load_config(path)
    text = str(e.value)
    assert "shedule: unknown key (did you mean 'schedule'?)" in text
    assert "optim.warmpu: unknown key" in text
    assert "data.batch.batch_size: expected an integer, got 'eight'" in text
    # Paths are checked once the types are right, so fix the types and see them.
    path = write(tmp_path, {"model": {"preset": "tiny", "tokenizer": str(tmp_path / "no-tokenizer")},
                            "data": {"source": str(tmp_path / "missing.json")}, "optim": {"lr": -1.0}})
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert len(e.value.problems) == 3
    text = str(e.value)
    assert "model.tokenizer" in text and "data.source" in text and "optim.lr: must be > 0" in text


def test_overrides_set_nested_fields_with_yaml_values(tmp_path):
    (tmp_path / "d.json").write_text("[]")
    (tmp_path / "tok").mkdir()
    cfg = load_config(None, ["model.preset=tiny", f"model.tokenizer={tmp_path / 'tok'}", f"data.source={tmp_path / 'd.json'}",
                             "optim.lr=1e-4", "data.batch.packing=true", "lora.target_modules=[qkv_proj]",
                             "schedule.epochs=2"])
    assert cfg.optim.lr == 1e-4 and isinstance(cfg.optim.lr, float)  # YAML reads 1e-4 as a string
    assert cfg.data.batch.packing is True
    assert cfg.lora.target_modules == ["qkv_proj"]
    assert cfg.schedule.epochs == 2
    cfg = load_config(None, ["model.preset=tiny", "data.source=x", "optim.lr_scale.vision_tokenizer=0.1"], check_paths=False)
    assert cfg.optim.lr_scale == {"vision_tokenizer": 0.1}
    with pytest.raises(ConfigError, match="optim.lr_scale.vision_tokenizer: expected a positive number, got -1"):
        load_config(None, ["model.preset=tiny", "data.source=x", "optim.lr_scale.vision_tokenizer=-1"], check_paths=False)


def test_cross_field_rules_of_the_stages(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(None, ["stage=dpo", "model.preset=tiny", "model.checkpoint=x", "data.source=x"], check_paths=False)
    text = str(e.value)
    assert "exactly one of model.preset" in text
    assert "dpo stage needs LoRA" in text
    with pytest.raises(ConfigError, match="trainable.lang_model: must be false with lora.enabled"):
        load_config(None, ["model.checkpoint=x", "data.source=x", "lora.enabled=true"], check_paths=False)
    # The encoded-sample cache lives in the training process.
    with pytest.raises(ConfigError, match="data.cache_mb: .* needs data.num_workers: 0"):
        load_config(None, ["model.checkpoint=x", "data.source=x", "data.cache_mb=512", "data.num_workers=2"], check_paths=False)
    assert load_config(None, ["model.checkpoint=x", "data.source=x", "data.cache_mb=512"], check_paths=False).data.cache_mb == 512
    # The image-token cache: only for frozen vision parts, and only with the sample cache.
    with pytest.raises(ConfigError) as e:
        load_config(None, ["model.checkpoint=x", "data.source=x", "runtime.image_token_cache=true"], check_paths=False)
    assert "needs data.cache_mb > 0" in str(e.value) and "needs trainable.vision_encoder and trainable.vision_tokenizer false" in str(e.value)
    load_config(None, ["model.checkpoint=x", "data.source=x", "runtime.image_token_cache=true", "data.cache_mb=64",
                       "trainable.vision_tokenizer=false"], check_paths=False)
    # Choosing the final step by held-out preference accuracy: DPO only, a positive interval, not under FSDP.
    with pytest.raises(ConfigError) as e:
        load_config(None, ["model.checkpoint=x", "data.source=x", "dpo.select_source=held.jsonl", "dpo.select_every=0",
                           "runtime.strategy=fsdp"], check_paths=False)
    text = str(e.value)
    assert "dpo.select_source: only for the dpo stage" in text and "dpo.select_every: must be >= 1" in text
    assert "dpo.select_source: not available with runtime.strategy fsdp" in text
    with pytest.raises(ConfigError, match=f"dpo.select_source: {tmp_path}/held.jsonl: no such file"):
        load_config(None, ["stage=dpo", "model.checkpoint=x", "data.source=x", "lora.enabled=true", "trainable.lang_model=false",
                           f"dpo.select_source={tmp_path}/held.jsonl"], check_paths=True)


def test_numbers_that_would_silently_train_nothing_or_unclipped_are_refused():
    base = ["model.checkpoint=x", "data.source=x"]
    with pytest.raises(ConfigError) as e:
        load_config(None, [*base, "optim.lr=.nan", "optim.grad_clip=.nan", "optim.eps=0", "dpo.beta=.nan"], check_paths=False)
    text = str(e.value)  # NaN passes every `x < 0` test; each is refused by name
    assert "optim.lr: must be > 0" in text and "optim.grad_clip: must be >= 0" in text
    assert "optim.eps: must be > 0" in text and "dpo.beta: must be > 0" in text
    with pytest.raises(ConfigError, match=r"lora.alpha: must be > 0"):
        load_config(None, [*base, "lora.enabled=true", "trainable.lang_model=false", "lora.alpha=0"], check_paths=False)


def test_the_chosen_dpo_step_needs_a_final_model(tmp_path):
    """The step chosen on held-out pairs lives in memory and in RUN_DIR/final; a run that returns
    a checkpoint instead would return the last step's weights under the chosen step's name."""
    dpo = ["stage=dpo", "model.checkpoint=x", "data.source=x", "lora.enabled=true", "trainable.lang_model=false",
           "dpo.select_source=held.jsonl"]
    for off in ("checkpoint.save_final=false", "lora.merge_at_end=false"):
        with pytest.raises(ConfigError, match="needs checkpoint.save_final and lora.merge_at_end true"):
            load_config(None, [*dpo, off], check_paths=False)
    load_config(None, dpo, check_paths=False)


def test_resolved_config_round_trips_through_yaml():
    cfg = load_config(None, ["model.checkpoint=m", "data.source=d.json", "optim.lr=3e-5"], check_paths=False)
    data = yaml.safe_load(cfg.to_yaml())
    from xgenmm.train.config import config_from_dict

    again = config_from_dict(data, check_paths=False)
    assert again == cfg and isinstance(again, TrainConfig)


@pytest.mark.parametrize("path", sorted([*(REPO / "configs").glob("*.yaml"), *(REPO / "configs" / "tiny").glob("*.yaml")]), ids=lambda p: str(p.relative_to(REPO)))
def test_example_configs_are_valid(path):
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or "stage" not in data:
        pytest.skip("not a stage config (a data mixture)")
    load_config(path, check_paths=False)


def test_a_preset_model_takes_pretrained_vision_and_llm_weights(tmp_path, tiny_tokenizer):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, SiglipVisionConfig, SiglipVisionModel

    from xgenmm.model.presets import preset_config
    from xgenmm.train.build import build_model

    tiny = preset_config("tiny", tokenizer=tiny_tokenizer)
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    torch.manual_seed(1)
    vision = SiglipVisionModel(SiglipVisionConfig(**tiny.vision.hf_config))
    vision.save_pretrained(tmp_path / "siglip")
    text = {k: v for k, v in tiny.text.items() if k != "model_type"}
    lm = AutoModelForCausalLM.from_config(AutoConfig.for_model("phi3", **{**text, "vocab_size": tiny.tokens.vocab_size + 40}))
    lm.save_pretrained(tmp_path / "phi3")
    cfg = load_config(None, ["model.preset=tiny", f"model.tokenizer={tmp_path / 'tok'}", f"data.source={tmp_path}",
                             f"model.vision_init={tmp_path / 'siglip'}", f"model.lm_init={tmp_path / 'phi3'}"])
    model, _ = build_model(cfg)
    assert torch.equal(model.vision_encoder.tower.embeddings.patch_embedding.weight, vision.state_dict()[next(k for k in vision.state_dict() if k.endswith("patch_embedding.weight"))])
    n = tiny.tokens.initial_tokenizer_len
    emb = model.lang_model.get_input_embeddings().weight
    assert torch.equal(emb[:n], lm.get_input_embeddings().weight[:n]) and emb.shape[0] == n + 3
    assert torch.equal(model.lang_model.model.layers[0].mlp.down_proj.weight, lm.model.layers[0].mlp.down_proj.weight)
    assert float(model.lang_model.get_output_embeddings().bias.abs().sum()) == 0.0
