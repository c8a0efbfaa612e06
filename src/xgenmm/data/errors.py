"""Bad input in a data pipeline: one exception type that names the sample and the reason, and
the per-reason counters that a run reports at its end.

Default policy: a bad sample is skipped, counted under its reason, and its id is logged.
Strict policy: the first bad sample raises `SampleError`."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger("xgenmm.data")

# Reasons, one name each, so that counters from different runs and sources add up.
BAD_JSON = "bad_json"  # a JSON line / record that does not parse or is not an object
BAD_RECORD = "bad_record"  # a record of no known sample kind, or with a field of the wrong type
MISSING_IMAGE = "missing_image"  # an image file that does not exist / a member absent from a shard
BAD_IMAGE = "bad_image"  # corrupt, truncated, empty or zero-sized image bytes
IMAGE_COUNT = "image_count_mismatch"  # `<image>` tags != images (beyond the single-image fix)
TOO_MANY_IMAGES = "too_many_images"  # more images than the policy allows (release: 4)
EMPTY_CONVERSATION = "empty_conversation"  # no turns, or a turn with empty text
TURN_ORDER = "bad_turn_order"  # not [system] user assistant user assistant ...
TOO_LONG = "too_long"  # cannot fit max_length under the length policy
NO_LABELS = "no_supervised_tokens"  # nothing left to learn from (e.g. after truncation)

# Not a skip: repairs the policy makes, reported beside the skips.
FIXED_IMAGE_TAGS = "fixed_single_image_tags"  # release rule: tags removed, `<image>\n` prepended
TRUNCATED = "truncated"  # cut at max_length (never inside an image)


class SampleError(ValueError):
    """A sample that cannot be used. `str()` names the sample and the reason."""

    def __init__(self, reason: str, sample_id: str, detail: str = ""):
        self.reason, self.sample_id, self.detail = reason, sample_id, detail
        super().__init__(f"sample {sample_id}: {reason}" + (f" ({detail})" if detail else ""))


@dataclass
class SkipStats:
    """Counters of a run: samples read, skipped per reason, repairs per kind."""

    strict: bool = False  # raise on the first bad sample instead of counting it
    read: int = 0  # raw records seen
    ok: int = 0  # samples that reached the batcher
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    repaired: Counter = field(default_factory=Counter)  # repair -> count

    def skip(self, err: SampleError) -> None:
        if self.strict:
            raise err
        self.skipped[err.reason] += 1
        log.warning("skipped %s", err)

    def repair(self, kind: str, sample_id: str) -> None:
        self.repaired[kind] += 1
        log.debug("sample %s: %s", sample_id, kind)

    def merge(self, other: "SkipStats | dict") -> None:
        d = other.to_dict() if isinstance(other, SkipStats) else other
        self.read += d["read"]
        self.ok += d["ok"]
        self.skipped.update(d["skipped"])
        self.repaired.update(d["repaired"])

    def to_dict(self) -> dict:
        return {"read": self.read, "ok": self.ok, "skipped": dict(self.skipped), "repaired": dict(self.repaired)}

    @classmethod
    def from_dict(cls, d: dict, strict: bool = False) -> "SkipStats":
        s = cls(strict=strict)
        s.merge(d)
        return s

    def summary(self) -> str:
        parts = [f"read {self.read}", f"ok {self.ok}"]
        parts += [f"{k} {v}" for k, v in sorted(self.skipped.items())]
        parts += [f"{k} {v}" for k, v in sorted(self.repaired.items())]
        return ", ".join(parts)
