"""How a rendered prompt and its completion become tokens, identically in training and eval.

The prompt and the completion are tokenized separately and concatenated, so the prompt
tokens a model trains on are exactly the tokens it is later prompted with (joint
tokenization can merge characters across the boundary and shift it). Without a chat
template, a space separates the prompt from the completion when the prompt does not end
in whitespace, as text would read. With the base model's chat template, the prompt is
the user message and the completion is the assistant's reply, ended by the end-of-turn
(EOS) token. The tokenizer is duck-typed (a transformers tokenizer); no torch here.
"""

from __future__ import annotations

from typing import Any

from loraland.data.errors import DataError


def prompt_text(tokenizer: Any, prompt: str, chat: bool) -> str:
    if not chat:
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "dataset.chatTemplate is true but the base model's tokenizer has no chat template"
        )
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )
    return str(text)


def encode_prompt(tokenizer: Any, prompt: str, chat: bool) -> list[int]:
    # A chat template writes its special tokens as text; do not add a second BOS.
    ids = tokenizer(prompt_text(tokenizer, prompt, chat), add_special_tokens=not chat)["input_ids"]
    return list(ids)


def completion_text(prompt: str, completion: str, chat: bool) -> str:
    if chat or not prompt or prompt[-1].isspace() or completion[:1].isspace():
        return completion
    return " " + completion


def encode_completion(tokenizer: Any, prompt: str, completion: str, chat: bool) -> list[int]:
    """Completion tokens followed by EOS, so the model learns to stop."""
    ids = list(
        tokenizer(completion_text(prompt, completion, chat), add_special_tokens=False)["input_ids"]
    )
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    return ids
