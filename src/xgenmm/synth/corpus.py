"""The world's text for tokenizer training, and the world's tokenizer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from ..model.template import DEFAULT_SYSTEM_PROMPT
from ..model.tokenizer import train_tokenizer
from .language import REFUSAL

CORPUS_PATH = "text/corpus.txt"
# Strings in every training sample are repeated so that BPE merges them into whole words:
# the system prompt then costs ~30 tokens per sample instead of ~150 bytes.
FIXED_REPEATS = 20
DEFAULT_VOCAB_SIZE = 768


def world_corpus(world_dir: str | Path) -> Iterator[str]:
    """Every distinct caption, question, answer, refusal and template string the world
    wrote (from `world_dir/text/corpus.txt`), the fixed strings repeated."""
    path = Path(world_dir) / CORPUS_PATH
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no world corpus here; run `xgenmm synth --out {world_dir}` first")
    for _ in range(FIXED_REPEATS):
        yield DEFAULT_SYSTEM_PROMPT
        yield REFUSAL
    with path.open(encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                yield line


def build_world_tokenizer(
    world_dir: str | Path, out_dir: str | Path | None = None, vocab_size: int = DEFAULT_VOCAB_SIZE
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on the world's corpus and save it in the Hugging
    Face format (with the chat and image special tokens) to `out_dir`, by default
    `world_dir/tokenizer`."""
    tok = train_tokenizer(world_corpus(world_dir), vocab_size=vocab_size)
    dest = Path(out_dir) if out_dir is not None else Path(world_dir) / "tokenizer"
    dest.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(dest))
    return tok
