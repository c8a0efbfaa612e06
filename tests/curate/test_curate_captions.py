"""Caption formats: OCR granularity levels 0-5 and the three grounding forms, exactly."""

import pytest

from xgenmm.curate.boxes import dedupe, normalize_box, position_phrase
from xgenmm.curate.grounding import Detection
from xgenmm.curate.grounding_captions import grounded_caption, grounding_captions, grounding_metadata
from xgenmm.curate.ocr import OCRLine
from xgenmm.curate.ocr_captions import normalize_lines, ocr_caption, ocr_captions, ocr_metadata

# "SALE" at pixels (56, 9)-(192.5, 34) of a 500x200 image
SALE = OCRLine("SALE", (56.0, 9.0, 192.5, 34.0), 0.91)
OPEN = OCRLine("OPEN 24H", (300.0, 150.0, 480.0, 190.0), 0.8)


def lines():
    return normalize_lines([SALE, OPEN], 500, 200)


def test_boxes_are_normalised_by_width_and_height_and_clipped():
    assert normalize_box((56, 9, 192.5, 34), 500, 200) == (0.112, 0.045, 0.385, 0.17)
    assert normalize_box((-10, 50, 600, 250), 500, 200) == (0.0, 0.25, 1.0, 1.0)


@pytest.mark.parametrize("box,phrase", [
    ((0.0, 0.0, 0.2, 0.2), "in the top-left corner of the image"),
    ((0.4, 0.0, 0.6, 0.2), "at the top of the image"),
    ((0.4, 0.4, 0.6, 0.6), "in the center of the image"),
    ((0.8, 0.4, 1.0, 0.6), "on the right side of the image"),
    ((0.0, 0.8, 0.2, 1.0), "in the bottom-left corner of the image"),
    ((0.7, 0.7, 1.0, 1.0), "in the bottom-right corner of the image"),
])
def test_position_phrase_names_the_third_of_the_image_holding_the_box_centre(box, phrase):
    assert position_phrase(box) == phrase


def test_ocr_caption_levels_0_to_5_read_exactly():
    ln = lines()[:1]
    assert ocr_caption(ln, 0) == 'The image contains the text "SALE".'
    assert ocr_caption(ln, 1) == 'The image contains the text "SALE" located in the top-left corner of the image.'
    assert ocr_caption(ln, 2) == ('The image contains the text "SALE" approximately starts at (0.1, 0.0) '
                                  'and extends up to (0.4, 0.2).')
    assert ocr_caption(ln, 3) == 'The image contains the text "SALE" starts at (0.112, 0.045) and extends up to (0.385, 0.170).'
    assert ocr_caption(ln, 4) == 'The image contains the text "SALE" (<bbox>0.112, 0.045, 0.385, 0.170</bbox>).'
    assert ocr_caption(ln, 5) == "<ocr>SALE</ocr><bbox>0.112, 0.045, 0.385, 0.170</bbox>"


def test_ocr_caption_lists_every_line_in_order():
    assert ocr_caption(lines(), 0) == 'The image contains the text "SALE", the text "OPEN 24H".'
    assert ocr_caption(lines(), 5) == ("<ocr>SALE</ocr><bbox>0.112, 0.045, 0.385, 0.170</bbox> "
                                       "<ocr>OPEN 24H</ocr><bbox>0.600, 0.750, 0.960, 0.950</bbox>")


def test_ocr_captions_add_raw_caption_variants_only_with_alt_text():
    without = ocr_captions(lines(), None)
    assert [(c["granularity"], c["include_datacomp_raw_cap"]) for c in without] == [(g, False) for g in range(6)]
    with_alt = ocr_captions(lines(), "Big shop front")
    assert len(with_alt) == 12
    assert with_alt[6] == {"text": 'Big shop front. The image contains the text "SALE", the text "OPEN 24H".',
                           "granularity": 0, "include_datacomp_raw_cap": True}


def test_ocr_metadata_holds_text_confidence_and_normalised_corner_points():
    meta = ocr_metadata(lines())
    assert meta["length"] == 2
    assert meta["entries"][0] == {"text": "SALE", "confidence": 0.91,
                                  "bbox": [[0.112, 0.045], [0.385, 0.045], [0.385, 0.17], [0.112, 0.17]]}


DOG = Detection("red dog", (16.0, 52.0, 72.0, 95.0), 0.9)  # on a 160x100 image
SOFA = Detection("sofa", (90.0, 10.0, 150.0, 40.0), 0.7)


def test_grounded_caption_bbox_form_follows_each_name_in_the_alt_text():
    alt = "A red dog sitting near the sofa"
    assert grounded_caption([DOG, SOFA], 160, 100, alt, "bbox") == (
        "A red dog <bbox>0.10, 0.52, 0.45, 0.95</bbox> sitting near the sofa <bbox>0.56, 0.10, 0.94, 0.40</bbox>")


def test_grounded_caption_extent_form():
    assert grounded_caption([DOG], 160, 100, "A red dog.", "extent") == (
        "A red dog (starts at (0.10, 0.52) and extends up to (0.45, 0.95)).")


def test_grounded_caption_position_form():
    assert grounded_caption([DOG, SOFA], 160, 100, "red dog and sofa", "position") == (
        "red dog (in the bottom-left corner of the image) and sofa (in the top-right corner of the image)")


def test_grounded_caption_without_the_names_in_the_text_lists_them():
    assert grounded_caption([DOG, SOFA], 160, 100, None, "bbox") == (
        "The image contains red dog <bbox>0.10, 0.52, 0.45, 0.95</bbox> and sofa <bbox>0.56, 0.10, 0.94, 0.40</bbox>.")


def test_grounded_caption_gives_every_box_of_a_name_best_first():
    second = Detection("sofa", (0.0, 0.0, 16.0, 10.0), 0.95)
    text = grounded_caption([SOFA, second], 160, 100, "a sofa", "position")
    assert text == "a sofa (in the top-left corner of the image and in the top-right corner of the image)"


def test_grounding_captions_and_metadata_cover_the_three_forms():
    caps = grounding_captions([DOG], 160, 100, "red dog")
    assert [c["form"] for c in caps] == ["bbox", "extent", "position"]
    assert grounding_metadata([DOG], 160, 100) == {
        "length": 1, "entries": [{"label": "red dog", "score": 0.9, "bbox": [0.1, 0.52, 0.45, 0.95]}]}


def test_dedupe_drops_lower_scored_overlapping_boxes():
    a, b, c = (0, 0, 10, 10, 0.9), (1, 1, 10, 10, 0.8), (20, 20, 30, 30, 0.5)
    kept = dedupe([b, c, a], lambda t: t[:4], lambda t: t[4], 0.5)
    assert kept == [a, c]
