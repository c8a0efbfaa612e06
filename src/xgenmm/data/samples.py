"""The four sample kinds of the recipe, typed. Images stay lazy (a path or bytes) until the
encoder decodes them, so that reading, shuffling and skipping cost no image decoding."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..model.template import IMAGE_TOKEN
from .errors import BAD_IMAGE, MISSING_IMAGE, SampleError


@dataclass
class ImageRef:
    """One image, not yet decoded: a local path, an fsspec URL, or bytes."""

    path: str | None = None  # local path or URL (anything fsspec opens)
    data: bytes | None = None  # encoded image bytes (a shard member, a Parquet cell, base64-decoded)
    name: str = ""  # how errors name it (member name, file name)

    def load(self, sample_id: str = "?"):
        """Decode to an RGB PIL image; a missing or corrupt image is a SampleError."""
        from ..model.image_processing import ImageLoadError, load_image

        label = f"{sample_id}:{self.name or self.path or 'image'}"
        source = self.data
        if source is None:
            if self.path is None:
                raise SampleError(MISSING_IMAGE, sample_id, "image has neither path nor bytes")
            if "://" in self.path and not self.path.startswith("file://"):
                source = _read_url(self.path, sample_id)
            else:
                source = self.path.removeprefix("file://")
                if not Path(source).exists():
                    raise SampleError(MISSING_IMAGE, sample_id, f"{source} not found")
        try:
            return load_image(source, name=label)
        except FileNotFoundError as e:
            raise SampleError(MISSING_IMAGE, sample_id, str(e)) from e
        except (ImageLoadError, OSError, ValueError) as e:
            raise SampleError(BAD_IMAGE, sample_id, str(e)) from e


def _read_url(url: str, sample_id: str) -> bytes:
    import fsspec

    try:
        with fsspec.open(url, "rb") as f:
            return f.read()
    except FileNotFoundError as e:
        raise SampleError(MISSING_IMAGE, sample_id, f"{url} not found") from e


@dataclass
class CaptionSample:
    """An image and its caption (pretraining)."""

    id: str  # names the sample in logs and errors (source:key)
    image: ImageRef  # the image
    text: str  # the caption

    @property
    def images(self) -> list[ImageRef]:
        return [self.image]


@dataclass
class InterleavedSample:
    """A document: text and images in reading order (pretraining)."""

    id: str  # names the sample in logs and errors
    segments: list = field(default_factory=list)  # str (text) or ImageRef, in order

    @property
    def images(self) -> list[ImageRef]:
        return [s for s in self.segments if isinstance(s, ImageRef)]


@dataclass
class Turn:
    role: str  # system, user or assistant
    text: str  # the message; images appear as `<image>` tags in place


@dataclass
class Conversation:
    """A chat with zero, one or several images (SFT). The i-th `<image>` tag, counted over the
    turns in order, is the i-th image."""

    id: str  # names the sample in logs and errors
    turns: list[Turn] = field(default_factory=list)  # [system] user assistant user assistant ...
    images: list[ImageRef] = field(default_factory=list)  # in the order of their tags

    def messages(self) -> list[dict]:
        return [{"role": t.role, "content": t.text} for t in self.turns]

    def tag_count(self) -> int:
        return sum(t.text.count(IMAGE_TOKEN) for t in self.turns)


@dataclass
class PreferenceSample:
    """A DPO pair: a prompt (turns ending with the user's, with images) and two answers."""

    id: str  # names the sample in logs and errors
    prompt: list[Turn] = field(default_factory=list)  # [system] user [assistant user ...]
    images: list[ImageRef] = field(default_factory=list)  # in the order of the prompt's tags
    chosen: str = ""  # the preferred answer
    rejected: str = ""  # the dispreferred answer

    def conversation(self, answer: str) -> Conversation:
        return Conversation(self.id, [*self.prompt, Turn("assistant", answer)], self.images)


Sample = CaptionSample | InterleavedSample | Conversation | PreferenceSample


def modality(sample) -> str:
    """text, single or multi: the grouping key of `group_by_modality`."""
    n = len(sample.images)
    return "text" if n == 0 else "single" if n == 1 else "multi"


def image_from_bytes_or_base64(value, name: str) -> ImageRef:
    import base64
    import binascii

    if isinstance(value, (bytes, bytearray)):
        return ImageRef(data=bytes(value), name=name)
    s = str(value)
    if s.startswith("data:"):
        if "," not in s:
            raise ValueError(f"{name}: a data URI without ',' before its payload")
        s = s.split(",", 1)[1]
    try:
        return ImageRef(data=base64.b64decode(s), name=name)
    except binascii.Error as e:  # a ValueError too, as callers catch it
        raise ValueError(f"{name}: not valid base64 ({e})") from e


__all__ = [
    "CaptionSample", "Conversation", "ImageRef", "InterleavedSample", "PreferenceSample", "Sample", "Turn",
    "image_from_bytes_or_base64", "modality",
]
