"""Raw records (dicts from JSON, shards or Parquet) to typed samples, with the release's
policies made explicit in `SamplePolicy`.

Accepted forms:
- LLaVA: {id, image: str | [str], conversations: [{from: human|gpt|system, value}]}
- OpenAI-style: {id, messages: [{role, content: str | [{type: text, text} | {type: image |
  image_url, ...}]}], images?: [...]} (string content places images with `<image>` tags)
- preference: {id, image(s)?, prompt: str | messages, chosen, rejected}
- interleaved: {segments: [{type: text, text} | {type: image, member | path | base64}]}, or
  the OBELICS form {texts: [str|None], images: [str|None]}
- caption: {image, caption | text | txt}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..model.template import IMAGE_PLACEHOLDER_TOKEN, IMAGE_TOKEN
from .errors import (
    BAD_RECORD, EMPTY_CONVERSATION, FIXED_IMAGE_TAGS, IMAGE_COUNT, TOO_MANY_IMAGES, TURN_ORDER,
    SampleError, SkipStats,
)
from .samples import (
    CaptionSample, Conversation, ImageRef, InterleavedSample, PreferenceSample, Turn, image_from_bytes_or_base64,
)

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
CAPTION_FIELDS = ("caption", "text", "txt")
KINDS = ("auto", "caption", "interleaved", "conversation", "preference")


@dataclass
class SamplePolicy:
    """What to do with imperfect samples (the release's rules are the defaults)."""

    max_images: int = 4  # conversations / preference prompts with more images are skipped (release: 4)
    fix_single_image_tags: bool = True  # one image but != 1 tag: strip tags, prepend `<image>\n` (release)
    strict: bool = False  # raise on the first bad sample instead of skipping it


# resolve(value, sample_id) -> ImageRef: turns a record's image field (a relative path, a
# shard member name, bytes, an ImageRef) into an ImageRef; each source supplies its own.
Resolver = Callable[[object, str], ImageRef]


def default_resolver(value, sample_id: str) -> ImageRef:
    if isinstance(value, ImageRef):
        return value
    if isinstance(value, (bytes, bytearray)):
        return ImageRef(data=bytes(value), name="bytes")
    if isinstance(value, dict):  # Hugging Face datasets' Image feature: {bytes, path}
        if value.get("bytes"):
            return ImageRef(data=value["bytes"], name=str(value.get("path") or "bytes"))
        if value.get("path"):
            return ImageRef(path=str(value["path"]), name=str(value["path"]))
    if isinstance(value, str):
        if value.startswith("data:"):
            return image_from_bytes_or_base64(value, "data-uri")
        return ImageRef(path=value, name=value)
    raise SampleError(BAD_RECORD, sample_id, f"image field of type {type(value).__name__}")


def detect_kind(rec: dict) -> str:
    if "chosen" in rec and "rejected" in rec:
        return "preference"
    if "conversations" in rec or "messages" in rec:
        return "conversation"
    if "segments" in rec or ("texts" in rec and "images" in rec):
        return "interleaved"
    if any(k in rec for k in CAPTION_FIELDS):
        return "caption"
    return "unknown"


def parse_record(rec, sample_id: str, resolve: Resolver = default_resolver, policy: SamplePolicy | None = None,
                 stats: SkipStats | None = None, kind: str = "auto"):
    """One record to one typed sample; raises SampleError naming the sample and the reason.
    A field of a type the record's kind does not allow (a number where a list is due, a key the
    declared kind needs missing) is a BAD_RECORD SampleError too, never another exception that
    would stop a loader without naming the sample."""
    policy = policy or SamplePolicy()
    if not isinstance(rec, dict):
        raise SampleError(BAD_RECORD, sample_id, f"record is a {type(rec).__name__}, not an object")
    sample_id = str(rec.get("id", sample_id)) if rec.get("id") is not None else sample_id
    try:
        return _parse(rec, sample_id, resolve, policy, stats, kind)
    except SampleError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        what = f"missing field {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
        raise SampleError(BAD_RECORD, sample_id, what) from e


def _parse(rec: dict, sample_id: str, resolve: Resolver, policy: SamplePolicy, stats: SkipStats | None, kind: str):
    sample = _parse_kind(rec, sample_id, resolve, policy, stats, kind)
    if any(IMAGE_PLACEHOLDER_TOKEN in t for t in _texts(sample)):  # the encoder writes these, after an <image> tag only
        raise SampleError(BAD_RECORD, sample_id, f"its text holds the reserved token {IMAGE_PLACEHOLDER_TOKEN}")
    return sample


def _texts(sample) -> list[str]:
    """Every text of a typed sample."""
    if isinstance(sample, Conversation):
        return [t.text for t in sample.turns]
    if isinstance(sample, PreferenceSample):
        return [t.text for t in sample.prompt] + [sample.chosen, sample.rejected]
    if isinstance(sample, CaptionSample):
        return [sample.text]
    return [x for x in sample.segments if isinstance(x, str)]


def _parse_kind(rec: dict, sample_id: str, resolve: Resolver, policy: SamplePolicy, stats: SkipStats | None, kind: str):
    kind = detect_kind(rec) if kind == "auto" else kind
    if kind == "conversation":
        return _conversation(rec, sample_id, resolve, policy, stats)
    if kind == "preference":
        return _preference(rec, sample_id, resolve, policy, stats)
    if kind == "interleaved":
        return _interleaved(rec, sample_id, resolve)
    if kind == "caption":
        text = next((rec[k] for k in CAPTION_FIELDS if k in rec), None)
        image = next((rec[k] for k in ("image", "jpg", "png", "jpeg", "webp") if rec.get(k) is not None), None)
        if not isinstance(text, str) or image is None:
            raise SampleError(BAD_RECORD, sample_id, "caption record needs an image and a caption/text string")
        return CaptionSample(sample_id, resolve(image, sample_id), text)
    raise SampleError(BAD_RECORD, sample_id, f"no known sample kind in keys {sorted(rec)[:8]}")


def _image_list(rec: dict, sample_id: str, resolve: Resolver) -> list[ImageRef]:
    value = rec.get("image", rec.get("images"))
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    return [resolve(v, sample_id) for v in values]


def _turns_llava(conv, sample_id: str) -> list[Turn]:
    if not isinstance(conv, list):
        raise SampleError(BAD_RECORD, sample_id, "conversations must be a list")
    turns = []
    for i, t in enumerate(conv):
        if not isinstance(t, dict) or not isinstance(t.get("value"), str):
            raise SampleError(BAD_RECORD, sample_id, f"turn {i} needs a string 'value'")
        role = ROLES.get(str(t.get("from", "")).lower())
        if role is None:
            raise SampleError(TURN_ORDER, sample_id, f"turn {i} is from {t.get('from')!r}")
        turns.append(Turn(role, t["value"]))
    return turns


def _turns_openai(messages, sample_id: str, resolve: Resolver) -> tuple[list[Turn], list[ImageRef]]:
    if not isinstance(messages, list):
        raise SampleError(BAD_RECORD, sample_id, "messages must be a list")
    turns, images = [], []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise SampleError(BAD_RECORD, sample_id, f"message {i} is not an object")
        role = ROLES.get(str(m.get("role", "")).lower())
        if role is None:
            raise SampleError(TURN_ORDER, sample_id, f"message {i} has role {m.get('role')!r}")
        content = m.get("content")
        if isinstance(content, str):
            turns.append(Turn(role, content))
            continue
        if not isinstance(content, list):
            raise SampleError(BAD_RECORD, sample_id, f"message {i} content must be a string or a list of parts")
        pieces = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                pieces.append(str(part.get("text", "")))
            elif kind in ("image", "image_url"):
                value = part.get(kind)
                value = value.get("url") if isinstance(value, dict) and "url" in value else value
                if value is None:  # {"type": "image"} with the image in the record's `images` list
                    pieces.append(IMAGE_TOKEN)
                    continue
                images.append(resolve(value, sample_id))
                pieces.append(IMAGE_TOKEN)
            else:
                raise SampleError(BAD_RECORD, sample_id, f"message {i} has a part of type {kind!r}")
        turns.append(Turn(role, "\n".join(pieces)))
    return turns, images


def _check_order(turns: list[Turn], sample_id: str, ends_with: str) -> None:
    if not turns:
        raise SampleError(EMPTY_CONVERSATION, sample_id, "no turns")
    body = turns[1:] if turns[0].role == "system" else turns
    if not body:
        raise SampleError(EMPTY_CONVERSATION, sample_id, "only a system turn")
    for i, t in enumerate(body):
        want = "user" if i % 2 == 0 else "assistant"
        if t.role != want:
            raise SampleError(TURN_ORDER, sample_id, f"turn {i} is {t.role}, expected {want}")
    if body[-1].role != ends_with:
        raise SampleError(TURN_ORDER, sample_id, f"last turn is {body[-1].role}, expected {ends_with}")
    for i, t in enumerate(turns):
        if not t.text.strip():
            raise SampleError(EMPTY_CONVERSATION, sample_id, f"turn {i} ({t.role}) is empty")


def _check_images(turns: list[Turn], images: list[ImageRef], sample_id: str, policy: SamplePolicy,
                  stats: SkipStats | None) -> list[Turn]:
    n, tags = len(images), sum(t.text.count(IMAGE_TOKEN) for t in turns)
    if n > policy.max_images:
        raise SampleError(TOO_MANY_IMAGES, sample_id, f"{n} images > {policy.max_images}")
    if n == 1 and tags != 1 and policy.fix_single_image_tags:
        # The release rule: remove every tag, put one `<image>\n` at the start of the first user turn.
        turns = [Turn(t.role, t.text.replace(IMAGE_TOKEN, "").strip() if IMAGE_TOKEN in t.text else t.text)
                 for t in turns]
        first = next(i for i, t in enumerate(turns) if t.role == "user")
        turns[first] = Turn("user", IMAGE_TOKEN + "\n" + turns[first].text)
        if stats is not None:
            stats.repair(FIXED_IMAGE_TAGS, sample_id)
        return turns
    if tags != n:
        raise SampleError(IMAGE_COUNT, sample_id, f"{tags} <image> tags for {n} images")
    return turns


def _conversation(rec, sample_id, resolve, policy, stats) -> Conversation:
    if "conversations" in rec:
        turns, images = _turns_llava(rec["conversations"], sample_id), _image_list(rec, sample_id, resolve)
    else:
        turns, images = _turns_openai(rec["messages"], sample_id, resolve)
        if not images:
            images = _image_list(rec, sample_id, resolve)
    _check_order(turns, sample_id, ends_with="assistant")
    turns = _check_images(turns, images, sample_id, policy, stats)
    return Conversation(sample_id, turns, images)


def _preference(rec, sample_id, resolve, policy, stats) -> PreferenceSample:
    prompt = rec.get("prompt", rec.get("conversations", rec.get("messages")))
    images: list[ImageRef] = []
    if isinstance(prompt, str):
        turns = [Turn("user", prompt)]
    elif isinstance(prompt, list) and prompt and isinstance(prompt[0], dict) and "from" in prompt[0]:
        turns = _turns_llava(prompt, sample_id)
    elif isinstance(prompt, list):
        turns, images = _turns_openai(prompt, sample_id, resolve)
    else:
        raise SampleError(BAD_RECORD, sample_id, "preference record needs a prompt (string or messages)")
    images = images or _image_list(rec, sample_id, resolve)
    chosen, rejected = rec.get("chosen"), rec.get("rejected")
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        raise SampleError(BAD_RECORD, sample_id, "chosen and rejected must be strings")
    if not chosen.strip() or not rejected.strip():
        raise SampleError(EMPTY_CONVERSATION, sample_id, "empty chosen or rejected answer")
    for name, answer in (("chosen", chosen), ("rejected", rejected)):
        if IMAGE_TOKEN in answer:  # the prompt's tags place its images; an answer has none
            raise SampleError(IMAGE_COUNT, sample_id, f"the {name} answer holds an {IMAGE_TOKEN} tag")
    _check_order(turns, sample_id, ends_with="user")
    turns = _check_images(turns, images, sample_id, policy, stats)
    return PreferenceSample(sample_id, turns, images, chosen, rejected)


def _interleaved(rec, sample_id, resolve) -> InterleavedSample:
    segments: list = []
    if "segments" in rec:
        raw = rec["segments"]
        if not isinstance(raw, list):
            raise SampleError(BAD_RECORD, sample_id, "segments must be a list")
        for i, seg in enumerate(raw):
            kind = seg.get("type") if isinstance(seg, dict) else None
            if kind == "text" and isinstance(seg.get("text"), str):
                segments.append(seg["text"])
            elif kind == "image":
                if "base64" in seg:
                    try:
                        segments.append(image_from_bytes_or_base64(seg["base64"], f"segment {i}"))
                    except ValueError as e:
                        raise SampleError(BAD_RECORD, sample_id, f"segment {i}: bad base64 ({e})") from e
                else:
                    value = seg.get("member", seg.get("path", seg.get("image")))
                    if value is None:
                        raise SampleError(BAD_RECORD, sample_id, f"segment {i}: image without member/path/base64")
                    segments.append(resolve(value, sample_id))
            else:
                raise SampleError(BAD_RECORD, sample_id, f"segment {i} is not a text or image segment")
    else:  # OBELICS: parallel lists, exactly one of text/image set per position
        texts, images = rec.get("texts"), rec.get("images")
        if not isinstance(texts, list) or not isinstance(images, list):
            raise SampleError(BAD_RECORD, sample_id, "an OBELICS document needs 'texts' and 'images' lists")
        if len(texts) != len(images):
            raise SampleError(BAD_RECORD, sample_id, f"'texts' has {len(texts)} positions but 'images' {len(images)}")
        for i, (t, im) in enumerate(zip(texts, images)):
            if (t is None) == (im is None):
                raise SampleError(BAD_RECORD, sample_id, f"position {i} must hold exactly one of a text and an image")
            if im is not None:
                segments.append(resolve(im, sample_id))
            elif isinstance(t, str):
                segments.append(t)
            else:
                raise SampleError(BAD_RECORD, sample_id, f"position {i}: text of type {type(t).__name__}")
    if not any(isinstance(s, str) and s.strip() for s in segments):
        raise SampleError(EMPTY_CONVERSATION, sample_id, "document has no text")
    return InterleavedSample(sample_id, segments)
