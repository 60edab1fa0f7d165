"""Examples -> token ids and labels, with completion-only loss masking. No torch here.

The label of every prompt token is IGNORE_INDEX when ``completionOnlyLoss`` is on, so the
loss is computed on the completion (and its closing EOS) alone. An example longer than
``maxSeqLength`` keeps its whole completion when it fits and loses the *start* of its
prompt (the end of a prompt, where the question and the answer cue usually are, matters
most); a completion that alone is too long keeps its beginning. Each truncation is counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loraland.data.examples import Example
from loraland.data.prompting import encode_completion, encode_prompt

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool

    @property
    def loss_tokens(self) -> int:
        """Labels the loss sees after the causal shift (the first position predicts nothing)."""
        return sum(1 for label in self.labels[1:] if label != IGNORE_INDEX)


def truncate(
    prompt: Sequence[int], completion: Sequence[int], max_len: int
) -> tuple[list[int], list[int], bool]:
    if len(prompt) + len(completion) <= max_len:
        return list(prompt), list(completion), False
    completion = list(completion[: max(1, max_len - 1)])
    room = max_len - len(completion)
    kept_prompt = list(prompt[len(prompt) - room :]) if room > 0 else []
    return kept_prompt, completion, True


def build(
    prompt: Sequence[int], completion: Sequence[int], max_len: int, completion_only: bool
) -> Encoded:
    prompt_ids, completion_ids, truncated = truncate(prompt, completion, max_len)
    prompt_labels = [IGNORE_INDEX] * len(prompt_ids) if completion_only else list(prompt_ids)
    return Encoded(
        input_ids=prompt_ids + completion_ids,
        labels=prompt_labels + completion_ids,
        truncated=truncated,
    )


def encode_examples(
    tokenizer: Any, examples: Sequence[Example], *, max_len: int, completion_only: bool, chat: bool
) -> list[Encoded]:
    out = []
    for example in examples:
        prompt = encode_prompt(tokenizer, example.prompt, chat)
        completion = encode_completion(tokenizer, example.prompt, example.completion, chat)
        out.append(build(prompt, completion, max_len, completion_only))
    return out
