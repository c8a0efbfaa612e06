"""`xgenmm data check`: scans as training reads, reports counts, histograms and the effect of
truncation and packing; `--strict` stops at the first bad sample, naming it."""

from __future__ import annotations

import json

import pytest
from datahelpers import llava, write_jsonl

from xgenmm.data.commands import register


def main(argv: list[str]) -> int:
    """`xgenmm data ...` through this subsystem's own parser."""
    import argparse

    parser = argparse.ArgumentParser(prog="xgenmm")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture()
def model_dir(tmp_path, processor):
    processor.save_pretrained(tmp_path / "proc")
    return str(tmp_path / "proc")


def bad_file(image_dir):
    many = llava(4, image=[f"img{i}.png" for i in range(5)])
    many["conversations"][0]["value"] = "<image>" * 5
    return str(write_jsonl(image_dir / "mixed.jsonl", [
        llava(0), llava(1, image="img3.png"), "not json", llava(2, image="missing.png"), many,
        {"id": "order", "conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]},
        llava(5, image=None, question="describe the image " * 80),
    ]))


def test_json_report_counts_samples_usable_and_skips_per_reason(image_dir, model_dir, capsys):
    assert main(["data", "check", bad_file(image_dir), "--model", model_dir, "--json", "--max-length", "300"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["samples"], r["ok"]) == (7, 2)
    assert r["skipped"] == {"bad_json": 1, "missing_image": 1, "too_many_images": 1, "bad_turn_order": 1,
                            "no_supervised_tokens": 1}
    assert sum(r["token_lengths"].values()) == 2 and r["images_per_sample"] == {"1": 2}
    assert set(r["packing"]) >= {"padding_fraction_padded", "padding_fraction_packed", "samples_sharing_a_row"}


def test_report_counts_truncated_samples(image_dir, model_dir, capsys):
    path = write_jsonl(image_dir / "long.jsonl", [llava(0, image=None, answer="the word is cat " * 80)])
    main(["data", "check", str(path), "--model", model_dir, "--json", "--max-length", "300"])
    r = json.loads(capsys.readouterr().out)
    assert r["truncated"] == 1 and r["repaired"] == {"truncated": 1}


def test_strict_exits_non_zero_naming_the_first_bad_sample(image_dir, model_dir, capsys):
    path = write_jsonl(image_dir / "s.jsonl", [llava(0), llava(9, image="missing.png")])
    assert main(["data", "check", str(path), "--model", model_dir, "--strict"]) == 1
    assert "sample s9: missing_image" in capsys.readouterr().err


def test_text_report_shows_histograms(image_dir, model_dir, capsys):
    path = write_jsonl(image_dir / "ok.jsonl", [llava(i, image=f"img{i}.png") for i in range(3)])
    assert main(["data", "check", str(path), "--model", model_dir]) == 0
    out = capsys.readouterr().out
    assert "samples read 3, usable 3" in out and "token lengths" in out and "images per sample" in out


def test_check_reads_a_mixture_file(image_dir, model_dir, capsys):
    write_jsonl(image_dir / "a.jsonl", [llava(i, image=None) for i in range(4)])
    (image_dir / "mix.yaml").write_text("data_path:\n  a.jsonl: 6\n")
    main(["data", "check", str(image_dir / "mix.yaml"), "--model", model_dir, "--json"])
    assert json.loads(capsys.readouterr().out)["ok"] == 6


def test_limit_bounds_a_scan_of_an_endless_resampled_mixture(image_dir, model_dir, capsys):
    write_jsonl(image_dir / "a.jsonl", [llava(i, image=None) for i in range(3)])
    (image_dir / "mix.yaml").write_text("sources:\n  - {path: a.jsonl, resample: true}\n")
    main(["data", "check", str(image_dir / "mix.yaml"), "--model", model_dir, "--json", "--limit", "7"])
    assert json.loads(capsys.readouterr().out)["samples"] == 7
