"""Tokenizers: adding xGen-MM's special tokens to an LLM tokenizer, and training a small
byte-level BPE tokenizer (the synthetic world's, or any small corpus) in the Hugging Face
format with every special token in place."""

from __future__ import annotations

from collections.abc import Iterable

from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from .template import CHAT_TOKENS, IMAGE_SPECIAL_TOKENS, JINJA_CHAT_TEMPLATE, PAD_TOKEN

EOS_TOKEN = "<|endoftext|>"
BOS_TOKEN = "<s>"
UNK_TOKEN = "<unk>"


def add_xgenmm_special_tokens(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Add what the release adds to Phi-3's tokenizer, in the release's order: `<pad>` when
    pad == eos (or missing), then `<image>`, `<image placeholder>`, `<|endofchunk|>`.
    The chat tags are made special when the tokenizer lacks them. Idempotent."""
    vocab = tokenizer.get_vocab()
    missing_chat = [t for t in CHAT_TOKENS if t not in vocab]
    if missing_chat:
        tokenizer.add_special_tokens({"additional_special_tokens": missing_chat})
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    missing = [t for t in IMAGE_SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        existing = [str(t) for t in tokenizer.additional_special_tokens if str(t) not in missing]
        tokenizer.add_special_tokens(
            {"additional_special_tokens": existing + missing}, replace_additional_special_tokens=True
        ) if _accepts_replace(tokenizer) else tokenizer.add_tokens(missing, special_tokens=True)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = JINJA_CHAT_TEMPLATE
    return tokenizer


def _accepts_replace(tokenizer: PreTrainedTokenizerBase) -> bool:
    import inspect

    return "replace_additional_special_tokens" in inspect.signature(tokenizer.add_special_tokens).parameters


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1000, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts` and return it as a Hugging Face fast
    tokenizer with bos/eos/unk, the chat tags, `<pad>` and the three image tokens. The image
    tokens take the last three ids, as in the release (`initial_tokenizer_len` = their first id)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [UNK_TOKEN, BOS_TOKEN, EOS_TOKEN, *CHAT_TOKENS, PAD_TOKEN]
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size - len(IMAGE_SPECIAL_TOKENS), 300),
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=list(CHAT_TOKENS),
    )
    fast.add_tokens(list(IMAGE_SPECIAL_TOKENS), special_tokens=True)
    fast.chat_template = JINJA_CHAT_TEMPLATE
    return fast
