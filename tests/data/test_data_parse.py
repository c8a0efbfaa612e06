"""Records to typed samples: the accepted forms and the release's policies, explicit."""

from __future__ import annotations

import pytest
from datahelpers import llava

from xgenmm.data import Conversation, ImageRef, InterleavedSample, PreferenceSample, SamplePolicy, parse_record
from xgenmm.data.errors import (BAD_RECORD, EMPTY_CONVERSATION, FIXED_IMAGE_TAGS, IMAGE_COUNT, TOO_MANY_IMAGES,
                                TURN_ORDER, SampleError, SkipStats)


def test_llava_record_becomes_conversation_with_user_and_assistant_turns():
    s = parse_record(llava(0), "file:0")
    assert isinstance(s, Conversation)
    assert [t.role for t in s.turns] == ["user", "assistant"]
    assert s.id == "s0" and [im.path for im in s.images] == ["img0.png"]


def test_llava_image_list_keeps_order_of_tags():
    rec = {"id": "m", "image": ["a.png", "b.png"], "conversations": [
        {"from": "human", "value": "<image> and <image>: same?"}, {"from": "gpt", "value": "no"}]}
    s = parse_record(rec, "x")
    assert [im.path for im in s.images] == ["a.png", "b.png"] and s.tag_count() == 2


def test_openai_messages_place_image_parts_as_tags_in_order():
    rec = {"id": "o", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "compare"}, {"type": "image", "image": "a.png"},
                                     {"type": "image_url", "image_url": {"url": "b.png"}}]},
        {"role": "assistant", "content": "they differ"}]}
    s = parse_record(rec, "x")
    assert s.turns[0].text == "compare\n<image>\n<image>"
    assert [im.path for im in s.images] == ["a.png", "b.png"]


def test_openai_data_uri_image_is_decoded_to_bytes():
    import base64

    uri = "data:image/png;base64," + base64.b64encode(b"\x89PNGdata").decode()
    rec = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}},
                                                     {"type": "text", "text": "what?"}]},
                        {"role": "assistant", "content": "a square"}]}
    s = parse_record(rec, "x")
    assert s.images[0].data == b"\x89PNGdata"


def test_text_only_conversation_is_allowed():
    s = parse_record(llava(1, image=None), "x")
    assert s.images == [] and s.tag_count() == 0


def test_single_image_with_missing_tag_gets_release_fix_and_is_counted():
    rec = llava(2)
    rec["conversations"][0]["value"] = "read the word"  # no tag
    stats = SkipStats()
    s = parse_record(rec, "x", stats=stats)
    assert s.turns[0].text == "<image>\nread the word"
    assert stats.repaired[FIXED_IMAGE_TAGS] == 1


def test_single_image_with_two_tags_keeps_exactly_one_at_the_start():
    rec = llava(3)
    rec["conversations"][0]["value"] = "<image> look <image>"
    s = parse_record(rec, "x")
    assert s.turns[0].text == "<image>\nlook" and s.tag_count() == 1


def test_single_image_fix_can_be_turned_off():
    rec = llava(4)
    rec["conversations"][0]["value"] = "no tag here"
    with pytest.raises(SampleError) as e:
        parse_record(rec, "x", policy=SamplePolicy(fix_single_image_tags=False))
    assert e.value.reason == IMAGE_COUNT and e.value.sample_id == "s4"


def test_more_than_four_images_is_skipped_by_release_policy():
    rec = llava(5, image=[f"{i}.png" for i in range(5)])
    rec["conversations"][0]["value"] = "<image>" * 5
    with pytest.raises(SampleError) as e:
        parse_record(rec, "x")
    assert e.value.reason == TOO_MANY_IMAGES


def test_multi_image_tag_mismatch_is_an_error_naming_the_sample():
    rec = llava(6, image=["a.png", "b.png"])  # one tag, two images
    with pytest.raises(SampleError, match="sample s6: image_count_mismatch"):
        parse_record(rec, "x")


def test_tags_without_images_are_a_mismatch():
    rec = llava(7, image=None)
    rec["conversations"][0]["value"] = "<image> what?"
    with pytest.raises(SampleError) as e:
        parse_record(rec, "x")
    assert e.value.reason == IMAGE_COUNT


@pytest.mark.parametrize("conversations,reason", [
    ([], EMPTY_CONVERSATION),
    ([{"from": "gpt", "value": "hi"}, {"from": "human", "value": "hello"}], TURN_ORDER),
    ([{"from": "human", "value": "a"}, {"from": "human", "value": "b"}], TURN_ORDER),
    ([{"from": "human", "value": "question only"}], TURN_ORDER),
    ([{"from": "human", "value": "q"}, {"from": "gpt", "value": "  "}], EMPTY_CONVERSATION),
    ([{"from": "robot", "value": "q"}, {"from": "gpt", "value": "a"}], TURN_ORDER),
])
def test_bad_conversations_are_rejected_with_their_reason(conversations, reason):
    with pytest.raises(SampleError) as e:
        parse_record({"id": "bad", "conversations": conversations}, "x")
    assert e.value.reason == reason and e.value.sample_id == "bad"


def test_system_turn_first_is_accepted():
    rec = {"conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": "q"},
                             {"from": "gpt", "value": "a"}]}
    assert [t.role for t in parse_record(rec, "x").turns] == ["system", "user", "assistant"]


def test_preference_record_keeps_prompt_images_chosen_and_rejected():
    rec = {"id": "p", "image": "a.png", "prompt": "<image>\nwhat colour?", "chosen": "red", "rejected": "blue"}
    s = parse_record(rec, "x")
    assert isinstance(s, PreferenceSample)
    assert s.prompt[0].text == "<image>\nwhat colour?" and (s.chosen, s.rejected) == ("red", "blue")
    assert [t.role for t in s.conversation(s.chosen).turns] == ["user", "assistant"]


def test_interleaved_segments_keep_reading_order_with_member_and_base64_images():
    import base64

    rec = {"segments": [{"type": "text", "text": "first"}, {"type": "image", "member": "0.png"},
                        {"type": "text", "text": "then"}, {"type": "image", "base64": base64.b64encode(b"xy").decode()}]}
    s = parse_record(rec, "doc")
    assert isinstance(s, InterleavedSample)
    assert [type(x).__name__ for x in s.segments] == ["str", "ImageRef", "str", "ImageRef"]
    assert s.segments[3].data == b"xy" and isinstance(s.segments[1], ImageRef)


@pytest.mark.parametrize("rec, kind, reason, says", [
    # malformed fields are BAD_RECORD sample errors naming the sample, never another exception
    ({"texts": ["a", None], "images": None}, "auto", BAD_RECORD, "'texts' and 'images' lists"),
    ({"caption": "x"}, "interleaved", BAD_RECORD, "'texts' and 'images' lists"),
    ({"caption": "x"}, "conversation", BAD_RECORD, "missing field 'messages'"),
    ({"conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}],
      "image": "data:image/png;base64,abcde"}, "auto", BAD_RECORD, "not valid base64"),
    ({"conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}],
      "image": "data:image/png;base64"}, "auto", BAD_RECORD, "without ','"),
    # OBELICS documents whose content would be dropped silently
    ({"texts": ["a", None, "tail"], "images": [None, "0.png"]}, "auto", BAD_RECORD, "'texts' has 3 positions but 'images' 2"),
    ({"texts": ["a", "b"], "images": [None, "0.png"]}, "auto", BAD_RECORD, "position 1 must hold exactly one"),
    ({"texts": "abc", "images": [None, None, None]}, "auto", BAD_RECORD, "'texts' and 'images' lists"),
    # an answer's <image> tag would meet no image; a literal placeholder would escape the length budget
    ({"prompt": "<image>\nq", "image": "a.png", "chosen": "<image> red", "rejected": "blue"}, "auto", IMAGE_COUNT,
     "the chosen answer holds an <image> tag"),
    ({"conversations": [{"from": "human", "value": "q <image placeholder>"}, {"from": "gpt", "value": "a"}]}, "auto",
     BAD_RECORD, "reserved token <image placeholder>"),
])
def test_malformed_records_are_sample_errors_naming_the_sample(rec, kind, reason, says):
    with pytest.raises(SampleError) as e:
        parse_record({"id": "bad", **rec}, "x", kind=kind)
    assert e.value.reason == reason and e.value.sample_id == "bad" and says in str(e.value)
