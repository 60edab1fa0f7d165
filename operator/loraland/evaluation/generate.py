"""Batched greedy generation for scoring.

Prompts are sorted by length so each batch pads little, left-padded (a decoder-only
model continues from the last position), and generated greedily so scores are
reproducible. Single-line tasks stop each row at its first newline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch


def generate_batched(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    batch_size: int,
    stop_at_newline: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy continuations of token-id ``prompts``, in the input order."""
    device = next(model.parameters()).device
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    outputs: list[str] = [""] * len(prompts)
    extra: dict[str, Any] = {}
    if stop_at_newline:
        extra = {"stop_strings": ["\n"], "tokenizer": tokenizer}
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, index in enumerate(chunk):
            tokens = list(prompts[index])
            ids[row, width - len(tokens) :] = torch.tensor(tokens, dtype=torch.long)
            mask[row, width - len(tokens) :] = 1
        with torch.inference_mode():
            generated = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=pad_id,
                eos_token_id=tokenizer.eos_token_id,
                **extra,
            )
        for row, index in enumerate(chunk):
            outputs[index] = tokenizer.decode(generated[row, width:], skip_special_tokens=True)
        if on_batch is not None:
            on_batch(len(chunk))
    return outputs
