"""`xgenmm curate ...` end to end: OCR with Tesseract on the synthetic world's words, grounding, bad input."""

import json
import shutil

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from curate_fixtures import WORDS, png_bytes, word_image, write_folder

from xgenmm.cli import main


def test_curate_ocr_writes_released_schema_and_caption_shards(tmp_path, capsys):
    pytest.importorskip("pytesseract")
    if shutil.which("tesseract") is None:
        pytest.skip("the tesseract binary is not installed (scripts/system-deps.sh installs it)")
    img, truth = word_image(WORDS[:2])
    blank = png_bytes(word_image([])[0])
    src = write_folder(tmp_path / "in", [("words", png_bytes(img), "a shop sign", {}), ("blank", blank, None, {})])
    code = main(["curate", "ocr", "-i", str(src), "-o", str(tmp_path / "out"), "--workers", "1", "--txt-granularity", "5"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["samples"] == {"read": 2, "written": 1, "skipped": 1} and summary["skipped"] == {"no_text": 1}
    table = pq.read_table(tmp_path / "out" / "parquet" / "in-00000.parquet")
    assert table.column_names == ["uid", "url", "key", "captions", "metadata"]
    row = table.to_pylist()[0]
    captions = json.loads(row["captions"])
    assert [c["granularity"] for c in captions] == list(range(6)) * 2
    assert captions[0]["text"] == 'The image contains the text "cat", the text "dog".'
    assert [e["text"] for e in json.loads(row["metadata"])["entries"]] == ["cat", "dog"]
    sample = next(iter(wds.WebDataset(str(tmp_path / "out" / "wds" / "in-00000.tar"), shardshuffle=False)))
    assert sample["txt"].decode().startswith("<ocr>cat</ocr><bbox>") and "png" in sample


def test_curate_grounding_with_known_boxes(tmp_path, scenes, capsys):
    src = write_folder(tmp_path / "in", scenes)
    code = main(["curate", "grounding", "-i", str(src), "-o", str(tmp_path / "out"), "--detector", "known",
                 "--workers", "1", "--txt-form", "bbox"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["samples"]["written"] == 3


def test_curate_with_a_missing_input_exits_with_a_one_line_error(tmp_path, capsys):
    code = main(["curate", "grounding", "-i", str(tmp_path / "missing"), "-o", str(tmp_path / "out"), "--detector", "known"])
    assert code == 1
    assert "curation input not found" in capsys.readouterr().err


def test_caption_shards_are_read_by_the_data_loader(tmp_path, scenes, capsys):
    from xgenmm.curate.tiny_models import tiny_tokenizer

    src = write_folder(tmp_path / "in", scenes)
    assert main(["curate", "grounding", "-i", str(src), "-o", str(tmp_path / "out"), "--detector", "known",
                 "--workers", "1"]) == 0
    tiny_tokenizer().save_pretrained(tmp_path / "tok")
    capsys.readouterr()
    code = main(["data", "check", str(tmp_path / "out" / "wds" / "in-00000.tar"), "--tokenizer", str(tmp_path / "tok"),
                 "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["samples"] == 3 and report["ok"] == 3
