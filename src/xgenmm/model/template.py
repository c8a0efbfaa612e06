"""The special tokens and the Phi-3 chat template of xGen-MM (reference sections 3, 4 and 7).

One place for every string that the released weights were trained on, shared by the
processor (prompts for generation) and the data layer (training samples and label masks).
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGE_TOKEN = "<image>"
IMAGE_PLACEHOLDER_TOKEN = "<image placeholder>"
END_OF_CHUNK_TOKEN = "<|endofchunk|>"
# Added after the LLM's own vocabulary, in this order (ids initial_len, +1, +2).
IMAGE_SPECIAL_TOKENS = (IMAGE_TOKEN, IMAGE_PLACEHOLDER_TOKEN, END_OF_CHUNK_TOKEN)
PAD_TOKEN = "<pad>"

SYSTEM_TAG = "<|system|>"
USER_TAG = "<|user|>"
ASSISTANT_TAG = "<|assistant|>"
END_TAG = "<|end|>"
CHAT_TOKENS = (SYSTEM_TAG, USER_TAG, ASSISTANT_TAG, END_TAG)

DEFAULT_SYSTEM_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

ROLE_TAGS = {"system": SYSTEM_TAG, "user": USER_TAG, "assistant": ASSISTANT_TAG}


@dataclass(frozen=True)
class Span:
    """A character span of a rendered chat; `supervised` marks an assistant answer + its end tag."""

    start: int
    end: int
    role: str
    supervised: bool


def render_chat(
    messages: list[dict],
    add_generation_prompt: bool = False,
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
) -> tuple[str, list[Span]]:
    """Render `messages` ([{"role": "system"|"user"|"assistant", "content": str}]) in the
    released template and return the text with the character spans of every part.

    `<|system|>\\n{system}<|end|>\\n<|user|>\\n{user}<|end|>\\n<|assistant|>\\n{answer}<|end|>\\n`
    (no BOS). The system prompt is inserted when the messages have none (pass
    system_prompt=None to leave it out). The supervised spans are exactly each assistant
    answer followed by `<|end|>\\n`; the `<|assistant|>\\n` prefix is not supervised.
    """
    if not messages:
        raise ValueError("render_chat: empty conversation")
    msgs = list(messages)
    if msgs[0].get("role") != "system" and system_prompt is not None:
        msgs.insert(0, {"role": "system", "content": system_prompt})
    parts: list[str] = []
    spans: list[Span] = []
    pos = 0

    def emit(text: str, role: str, supervised: bool) -> None:
        nonlocal pos
        parts.append(text)
        spans.append(Span(pos, pos + len(text), role, supervised))
        pos += len(text)

    for i, m in enumerate(msgs):
        role, content = m.get("role"), m.get("content")
        if role not in ROLE_TAGS:
            raise ValueError(f"render_chat: message {i} has role {role!r}; expected system, user or assistant")
        if not isinstance(content, str):
            raise ValueError(f"render_chat: message {i} content must be a string, got {type(content).__name__}")
        emit(f"{ROLE_TAGS[role]}\n", role, False)
        emit(f"{content}{END_TAG}\n", role, role == "assistant")
    if add_generation_prompt:
        emit(f"{ASSISTANT_TAG}\n", "assistant", False)
    return "".join(parts), spans


def chat_prompt(messages: list[dict], system_prompt: str | None = DEFAULT_SYSTEM_PROMPT) -> str:
    """The generation prompt for `messages` (ending with `<|assistant|>\\n`)."""
    return render_chat(messages, add_generation_prompt=True, system_prompt=system_prompt)[0]


def base_image_block(num_tokens: int) -> str:
    """The base-model convention for one image: `<image>` + (num_tokens - 1) placeholders."""
    return IMAGE_TOKEN + IMAGE_PLACEHOLDER_TOKEN * (num_tokens - 1)


# The same template as a Jinja string, saved with tokenizers so that
# `tokenizer.apply_chat_template` in other tools renders exactly what render_chat renders.
JINJA_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    '{{ "<|system|>\\n' + DEFAULT_SYSTEM_PROMPT + '<|end|>\\n" }}'
    "{% endif %}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
