"""Completion-only loss: exactly the prompt tokens are ignored; truncation is counted."""

from __future__ import annotations

from typing import Any

import pytest
from loraland.data.examples import Example
from loraland.trainer.encoding import IGNORE_INDEX, build, encode_examples, truncate


class CharTokenizer:
    """One token per character; id 1 is EOS. Enough to check the bookkeeping exactly."""

    eos_token_id = 1
    chat_template = None

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, Any]:
        return {"input_ids": [ord(c) for c in text]}


def test_prompt_tokens_are_masked_and_completion_tokens_kept() -> None:
    tok = CharTokenizer()
    [enc] = encode_examples(
        tok, [Example("Q: hi\nA:", "yes", "row 1")], max_len=64, completion_only=True, chat=False
    )
    prompt = [ord(c) for c in "Q: hi\nA:"]
    completion = [ord(c) for c in " yes"] + [1]  # a space joins them; EOS closes the answer
    assert enc.input_ids == prompt + completion
    assert enc.labels == [IGNORE_INDEX] * len(prompt) + completion
    assert not enc.truncated
    assert enc.loss_tokens == len(completion)


def test_full_loss_keeps_prompt_labels() -> None:
    enc = build([5, 6, 7], [8, 1], max_len=10, completion_only=False)
    assert enc.labels == enc.input_ids == [5, 6, 7, 8, 1]
    assert enc.loss_tokens == 4  # the first position predicts nothing


@pytest.mark.parametrize(
    ("prompt", "completion", "max_len", "expected"),
    [
        ([1, 2, 3], [4, 5], 5, ([1, 2, 3], [4, 5], False)),
        # too long: the prompt loses its start, the completion stays whole
        ([1, 2, 3, 4, 5], [6, 7], 4, ([4, 5], [6, 7], True)),
        # a completion that alone is too long keeps its start and one prompt token
        ([1, 2, 3], [4, 5, 6, 7, 8], 4, ([3], [4, 5, 6], True)),
        ([], [4, 5, 6], 2, ([], [4], True)),
    ],
)
def test_truncation_keeps_the_completion(
    prompt: list[int],
    completion: list[int],
    max_len: int,
    expected: tuple[list[int], list[int], bool],
) -> None:
    assert truncate(prompt, completion, max_len) == expected


def test_truncated_examples_are_counted_and_masked_consistently() -> None:
    tok = CharTokenizer()
    examples = [Example("x" * 50, "ok", "a"), Example("short", "ok", "b")]
    encoded = encode_examples(tok, examples, max_len=16, completion_only=True, chat=False)
    assert [e.truncated for e in encoded] == [True, False]
    long = encoded[0]
    assert len(long.input_ids) == 16
    completion = [ord(c) for c in " ok"] + [1]
    assert long.input_ids[-4:] == completion
    assert long.labels == [IGNORE_INDEX] * 12 + completion


def test_chat_template_without_one_is_a_clear_error() -> None:
    from loraland.data import DataError

    with pytest.raises(
        DataError, match="chatTemplate is true but the base model's tokenizer has no chat template"
    ):
        encode_examples(
            CharTokenizer(), [Example("p", "c", "a")], max_len=8, completion_only=True, chat=True
        )


def test_token_loss_sum_matches_the_shifted_reference() -> None:
    import torch
    import torch.nn.functional as F
    from loraland.trainer.loop import collate, token_loss_sum

    torch.manual_seed(0)
    batch = collate([build([5, 6, 7], [8, 1], 16, True), build([9], [4, 3, 1], 16, True)], pad_id=0)
    logits = torch.randn(2, batch["input_ids"].shape[1], 11)
    labels = batch["labels"]
    reference = F.cross_entropy(
        logits[:, :-1].reshape(-1, 11),
        labels[:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    torch.testing.assert_close(token_loss_sum(logits, labels), reference)
    # Padding carries no label and no attention.
    assert labels[1].tolist() == [IGNORE_INDEX, 4, 3, 1, IGNORE_INDEX]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]


class ChatTokenizer(CharTokenizer):
    chat_template = "<template>"

    def __init__(self) -> None:
        self.calls: list[bool] = []

    def apply_chat_template(
        self, messages: list[dict[str, str]], add_generation_prompt: bool, tokenize: bool
    ) -> str:
        assert add_generation_prompt and not tokenize
        return f"<u>{messages[0]['content']}</u><a>"

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, Any]:
        self.calls.append(add_special_tokens)
        return super().__call__(text, add_special_tokens)


def test_chat_template_wraps_the_prompt_and_adds_no_space_or_second_bos() -> None:
    tok = ChatTokenizer()
    [enc] = encode_examples(
        tok, [Example("hi", "yes", "r")], max_len=64, completion_only=True, chat=True
    )
    prompt = [ord(c) for c in "<u>hi</u><a>"]
    assert enc.input_ids == prompt + [ord(c) for c in "yes"] + [1]
    assert enc.labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    assert tok.calls == [False, False]
