"""Tesseract on rendered words whose text and boxes are known; the line filters."""

import shutil

import pytest
from curate_fixtures import WORDS, word_image

from xgenmm.curate.boxes import iou
from xgenmm.curate.ocr import OCRFilter, OCRLine, filter_lines, sort_reading_order

needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None, reason="the tesseract binary is not installed (scripts/system-deps.sh installs it)"
)


@pytest.fixture(scope="module")
def engine():
    pytest.importorskip("pytesseract")
    if shutil.which("tesseract") is None:
        pytest.skip("the tesseract binary is not installed (scripts/system-deps.sh installs it)")
    from xgenmm.curate.ocr import TesseractEngine

    return TesseractEngine()


@pytest.fixture(scope="module")
def read_world_words(engine):
    """Every word of the synthetic world, six to an image: (truth, lines read) per image."""
    out = []
    for chunk in (WORDS[:6], WORDS[6:]):
        img, truth = word_image(list(chunk))
        out.append((truth, engine.read(img)))
    return out


@needs_tesseract
def test_tesseract_reads_every_word_of_the_synthetic_world(read_world_words):
    truth = [w for t, _ in read_world_words for w, _ in t]
    read = {ln.text for _, lines in read_world_words for ln in lines}
    assert len(truth) == 12 and sum(w in read for w in truth) / len(truth) == 1.0, read


@needs_tesseract
def test_tesseract_line_boxes_overlap_the_rendered_boxes(read_world_words):
    for truth, lines in read_world_words:
        by_text = {ln.text: ln for ln in lines}
        for word, box in truth:
            assert iou(by_text[word].box, box) > 0.8, (word, by_text[word].box, box)
            assert 0.5 < by_text[word].confidence <= 1.0


@needs_tesseract
def test_tesseract_finds_no_text_in_a_blank_image(engine):
    from PIL import Image

    assert engine.read(Image.new("RGB", (200, 100), "white")) == []


def test_filter_drops_unsure_tiny_and_short_lines_and_caps_the_count():
    lines = [
        OCRLine("KEEP", (0, 0, 50, 20), 0.9),
        OCRLine("UNSURE", (0, 30, 50, 50), 0.3),
        OCRLine("TINY", (0, 60, 50, 61), 0.9),
        OCRLine("|", (0, 70, 5, 90), 0.9),
        OCRLine("ALSO", (0, 100, 50, 120), 0.8),
        OCRLine("BEST", (0, 130, 50, 150), 0.95),
    ]
    kept = filter_lines(lines, 200, OCRFilter(min_confidence=0.5, min_text_height=0.02, min_chars=2, max_lines=2))
    assert [ln.text for ln in kept] == ["KEEP", "BEST"]  # the two most confident, still in reading order


def test_reading_order_is_rows_top_to_bottom_then_left_to_right():
    lines = [OCRLine("C", (0, 100, 10, 120), 1), OCRLine("B", (60, 2, 80, 22), 1), OCRLine("A", (0, 0, 20, 20), 1)]
    assert [ln.text for ln in sort_reading_order(lines)] == ["A", "B", "C"]
