"""Model directories: bit-exact round trips, sharding, the Hugging Face cache, key errors."""

import json
import shutil

import pytest
import torch

from xgenmm.model import XGenMM, XGenMMProcessor
from xgenmm.model.checkpoint import WEIGHTS_INDEX


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_save_and_load_is_bit_exact_with_processor(tiny_model, tiny_processor, tmp_path):
    tiny_model.save_pretrained(tmp_path / "m", processor=tiny_processor)
    loaded = XGenMM.from_pretrained(tmp_path / "m")
    assert_same_weights(tiny_model, loaded)
    assert loaded.config == tiny_model.config
    proc = XGenMMProcessor.from_pretrained(tmp_path / "m")
    assert proc.image_token_id == tiny_processor.image_token_id
    assert proc.tokenizer.get_vocab() == tiny_processor.tokenizer.get_vocab()
    assert proc.image_processor.to_dict() == tiny_processor.image_processor.to_dict()


def test_large_models_are_sharded_with_an_index(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "m", max_shard_size="500KB")
    index = json.loads((tmp_path / "m" / WEIGHTS_INDEX).read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert_same_weights(tiny_model, XGenMM.from_pretrained(tmp_path / "m"))


def test_saving_over_a_model_replaces_it_whole(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "m", max_shard_size="500KB")
    tiny_model.save_pretrained(tmp_path / "m")  # now a single file: no stale shards remain
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_loads_from_the_hugging_face_cache_offline(tiny_model, tmp_path, monkeypatch):
    snap = tmp_path / "hub" / "models--acme--tiny-xgenmm" / "snapshots" / "abc123"
    tiny_model.save_pretrained(snap)
    (tmp_path / "hub" / "models--acme--tiny-xgenmm" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--tiny-xgenmm" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    assert_same_weights(tiny_model, XGenMM.from_pretrained("acme/tiny-xgenmm"))
    with pytest.raises(FileNotFoundError, match="acme/absent"):
        XGenMM.from_pretrained("acme/absent")


def test_missing_unexpected_and_misshaped_keys_are_named(tiny_model, tmp_path):
    from safetensors.torch import load_file, save_file

    tiny_model.save_pretrained(tmp_path / "m")
    state = load_file(tmp_path / "m" / "model.safetensors")
    state.pop("vision_tokenizer.latents")
    state["extra.weight"] = torch.zeros(1)
    state["vision_tokenizer.norm.weight"] = torch.zeros(3)
    save_file(state, tmp_path / "m" / "model.safetensors")
    with pytest.raises(ValueError) as e:
        XGenMM.from_pretrained(tmp_path / "m")
    msg = str(e.value)
    assert "vision_tokenizer.latents" in msg and "extra.weight" in msg and "vision_tokenizer.norm.weight" in msg


def test_a_released_checkpoint_must_be_imported_first(tmp_path):
    from tests.conftest import RELEASE_FIXTURES

    shutil.copytree(RELEASE_FIXTURES / "checkpoint", tmp_path / "rel")
    with pytest.raises(ValueError, match="convert import"):
        XGenMM.from_pretrained(tmp_path / "rel")


def test_loading_the_processor_prints_no_unknown_model_type_notice(tiny_model, tiny_processor, tmp_path):
    """transformers does not know the `xgenmm` model type; a fresh process loading our
    tokenizer must not be told about it on every load."""
    import subprocess
    import sys

    tiny_model.save_pretrained(tmp_path / "m", processor=tiny_processor)
    code = "import sys; from xgenmm.model import XGenMMProcessor; print(len(XGenMMProcessor.from_pretrained(sys.argv[1]).tokenizer))"
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout.strip()) == len(tiny_processor.tokenizer)
    assert "model of type" not in run.stdout + run.stderr


def test_a_damaged_shard_index_or_config_is_named(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "m", max_shard_size="500KB")
    shard = sorted(set(json.loads((tmp_path / "m" / WEIGHTS_INDEX).read_text())["weight_map"].values()))[1]
    data = (tmp_path / "m" / shard).read_bytes()
    (tmp_path / "m" / shard).write_bytes(data[: len(data) // 2])  # a cut-off download
    with pytest.raises(ValueError, match=f"{shard}: unreadable safetensors file"):
        XGenMM.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / WEIGHTS_INDEX).write_text("{oops")
    with pytest.raises(ValueError, match=f"{WEIGHTS_INDEX}: not valid JSON"):
        XGenMM.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{oops")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        XGenMM.from_pretrained(tmp_path / "m")


def test_saving_never_replaces_a_file_or_a_folder_of_other_files(tiny_model, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds files that are not a model"):
        tiny_model.save_pretrained(tmp_path / "notes")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(FileExistsError, match="is a file"):
        tiny_model.save_pretrained(tmp_path / "afile")
    (tmp_path / "empty").mkdir()
    tiny_model.save_pretrained(tmp_path / "empty")  # an empty folder, or a model's, is written
    tiny_model.save_pretrained(tmp_path / "empty")
    assert (tmp_path / "empty" / "config.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
