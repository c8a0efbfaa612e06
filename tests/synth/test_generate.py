"""Determinism, the tokenizer built from the world, and bad input."""

from __future__ import annotations

import pytest

from xgenmm.model.template import IMAGE_PLACEHOLDER_TOKEN, IMAGE_TOKEN, render_chat
from xgenmm.synth.corpus import build_world_tokenizer
from xgenmm.synth.generate import WorldSize, generate_world

TINY = WorldSize(12, 4, 5, 12, 8, 6, 4, 2, 3, 5, 3, 2, 3, 4, 1, 2)


def _json_files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.suffix in (".json", ".jsonl", ".tsv", ".tar")}


@pytest.fixture(scope="module")
def easy_worlds(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    for name, seed, workers in (("a", 1, 1), ("b", 1, 1), ("c", 2, 1), ("p", 1, 2)):
        generate_world(root / name, seed=seed, preset="easy", size=TINY, progress=False, workers=workers)
    return root


def test_same_seed_gives_identical_bytes(easy_worlds):
    a, b = _json_files(easy_worlds / "a"), _json_files(easy_worlds / "b")
    assert a.keys() == b.keys() and len(a) > 10
    assert [k for k in a if a[k] != b[k]] == []


def test_worker_processes_write_the_same_world(easy_worlds):
    """Sets written by two processes: every file's bytes (images included), the manifest and
    the tokenizer corpus as one process writes them."""
    import json

    one, two = easy_worlds / "a", easy_worlds / "p"
    files = lambda root: {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    a, p = files(one), files(two)
    assert a.keys() == p.keys() and len([k for k in a if k.endswith(".png")]) > 20
    assert [k for k in a if a[k] != p[k]] == []
    assert json.loads(a["manifest.json"])["files"] == json.loads(p["manifest.json"])["files"]


def test_bad_worker_count_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        generate_world(tmp_path / "w", size=TINY, progress=False, workers=0)
    assert not (tmp_path / "w").exists()


def test_different_seed_gives_different_data(easy_worlds):
    a, c = _json_files(easy_worlds / "a"), _json_files(easy_worlds / "c")
    assert a["sft/single.json"] != c["sft/single.json"]
    assert a["eval/world_vqa/questions.json"] != c["eval/world_vqa/questions.json"]


def test_world_tokenizer_round_trips_chats_with_special_tokens(small_world, tmp_path):
    tok = build_world_tokenizer(small_world, tmp_path / "tok")
    text, _ = render_chat([
        {"role": "user", "content": f"{IMAGE_TOKEN}\nWhat colour is the shape at the top-left?"},
        {"role": "assistant", "content": "red"},
    ])
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    for special in (IMAGE_TOKEN, IMAGE_PLACEHOLDER_TOKEN, "<|endofchunk|>", "<|user|>", "<|assistant|>", "<|end|>", "<pad>"):
        assert len(tok(special)["input_ids"]) == 1, special
    assert len(ids) < 80, "the world's words are whole tokens"
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert again(text)["input_ids"] == ids


def test_held_out_sets_do_not_shape_the_tokenizer_corpus(easy_worlds, tmp_path):
    """The corpus is the training data's text: larger held-out sets leave it, the training
    files and so the tokenizer unchanged."""
    from dataclasses import replace

    bigger = replace(TINY, vqa_per_kind=5, pope_images=6, safety_eval=9, multi_per_kind=4)
    generate_world(tmp_path / "w", seed=1, preset="easy", size=bigger, progress=False)
    a, b = _json_files(easy_worlds / "a"), _json_files(tmp_path / "w")
    train = [k for k in a if not k.startswith("eval/") and k != "manifest.json"]
    assert len(train) > 4 and [k for k in train if a[k] != b[k]] == []
    corpus = (easy_worlds / "a" / "text/corpus.txt").read_text()
    assert corpus == (tmp_path / "w" / "text/corpus.txt").read_text()
    assert a["eval/world_vqa/questions.json"] != b["eval/world_vqa/questions.json"]


def test_unknown_preset_and_size_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown world preset 'huge'"):
        generate_world(tmp_path, preset="huge")
    with pytest.raises(ValueError, match="unknown world size 'tiny'"):
        generate_world(tmp_path, size="tiny")


def test_held_out_sets_ask_only_about_words_the_training_text_names(small_manifest):
    held_out = small_manifest["datasets"]["held_out_text"]
    assert held_out["texts"] > 100 and held_out["words_not_in_training"] == []


def test_a_held_out_word_no_training_text_uses_is_named(tmp_path, monkeypatch, caplog):
    """An evaluation question about something the training data never names could not be
    answered by any model trained on it: the manifest lists such words and a warning names them."""
    import xgenmm.synth.evalsets as E

    write_vqa = E.write_vqa

    def with_a_new_word(out, folder, cfg, rng, per_kind, corpus):
        counts = write_vqa(out, folder, cfg, rng, per_kind, corpus)
        corpus.add("Is there a zebra in the image?")
        return counts

    monkeypatch.setattr(E, "write_vqa", with_a_new_word)
    with caplog.at_level("WARNING", logger="xgenmm.synth.generate"):
        man = generate_world(tmp_path / "w", seed=1, preset="easy", size=TINY, progress=False)
    assert "zebra" in man["datasets"]["held_out_text"]["words_not_in_training"]
    assert "zebra" in caplog.text


def test_no_more_worker_processes_than_data_sets(tmp_path, monkeypatch):
    """A pool starts all of its workers at once: `--workers 99999` started thousands of
    processes for the world's fifteen sets."""
    import concurrent.futures as cf

    started = []
    real = cf.ProcessPoolExecutor

    def pool(max_workers, **kw):
        started.append(max_workers)
        return real(max_workers, **kw)

    monkeypatch.setattr(cf, "ProcessPoolExecutor", pool)
    man = generate_world(tmp_path / "w", size=TINY, progress=False, workers=500)
    n_sets = len(man["datasets"]["train"]) + len(man["datasets"]["eval"])
    assert started and started[0] <= n_sets
