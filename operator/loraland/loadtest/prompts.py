"""Prompts and output lengths for each request.

Either a prompt file (the user's real traffic) or generated prompts whose length in words
is drawn uniformly from a range; the LoRA Land load test used 90-110 words in and 90-110
new tokens out, which are the defaults. Generated prompts are an instruction followed by
words drawn from a fixed English vocabulary: what matters to the server is the number of
input tokens, and real words tokenize like real text (about 1.3 tokens per word) where
random strings would not.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loraland.loadtest.errors import LoadTestError
from loraland.loadtest.options import IntRange

INSTRUCTION = "Summarize the following text in a few sentences:"

# Common English words; a prompt is the instruction and a run of these.
_WORDS = """
    the of and to in is was for on that with as by at from his her they this had not are
    but which have one were all their there been has when who will more would if out so
    what up about into than them can only other new some time could these two may then
    first any like now my such make over our even most after also did many before must
    through back years where much your way well down should because each just those people
    how too little state good very world still own see men work long here get both between
    life being under never day same another know while last might great old year off come
    since against go came right used take three small house himself few during without
    again place around however home found thought went say part once high general upon
    school every water often number city children country later light question side
    river market garden morning music letter window village table mountain summer report
    system group problem service friend power money story young order book word business
"""
VOCABULARY: tuple[str, ...] = tuple(_WORDS.split())

#: Keys a JSON-lines prompt may use, in order of preference (OpenAI, TGI, plain text).
PROMPT_KEYS = ("prompt", "inputs", "text")


def generate_prompt(rng: random.Random, words: int) -> str:
    """An instruction and ``words`` vocabulary words (the instruction's words count too)."""
    head = INSTRUCTION.split()
    body = [rng.choice(VOCABULARY) for _ in range(max(words - len(head), 0))]
    return " ".join([*head, *body][: max(words, 1)])


def load_prompt_file(path: Path) -> list[str]:
    """Prompts from ``.txt`` (one per non-blank line), ``.jsonl`` or ``.json``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LoadTestError(f"--prompt-file: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadTestError(f"--prompt-file: cannot read {path}: {exc}") from None
    if path.suffix == ".jsonl":
        prompts = [
            _prompt_of(_json_line(line, path, number), path, number)
            for number, line in enumerate(text.splitlines(), start=1)
            if line.strip()
        ]
    elif path.suffix == ".json":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LoadTestError(f"--prompt-file: {path} is not valid JSON: {exc.msg}") from None
        if not isinstance(items, list):
            raise LoadTestError(f"--prompt-file: {path} must hold a JSON list of prompts")
        prompts = [_prompt_of(item, path, i) for i, item in enumerate(items, start=1)]
    else:
        prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise LoadTestError(f"--prompt-file: {path} holds no prompts")
    return prompts


def _json_line(line: str, path: Path, number: int) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise LoadTestError(f"--prompt-file: {path} line {number}: not JSON ({exc.msg})") from None


def _prompt_of(item: object, path: Path, number: int) -> str:
    if isinstance(item, str) and item.strip():
        return item
    if isinstance(item, dict):
        for key in PROMPT_KEYS:
            value = item.get(key)
            if isinstance(value, str) and value.strip():
                return value
    raise LoadTestError(
        f"--prompt-file: {path} item {number}: expected a non-empty string or an object "
        f"with one of {', '.join(PROMPT_KEYS)}"
    )


@dataclass(frozen=True)
class PromptPlan:
    """One request's prompt and output length."""

    prompt: str
    max_new_tokens: int


class PromptSource:
    """Draws prompts (from a file, or generated) and output lengths with one generator."""

    def __init__(
        self,
        rng: random.Random,
        words: IntRange,
        max_new_tokens: IntRange,
        prompts: Sequence[str] | None = None,
    ) -> None:
        self._rng = rng
        self._words = words
        self._max_new_tokens = max_new_tokens
        self._prompts = tuple(prompts) if prompts else ()

    def next(self) -> PromptPlan:
        if self._prompts:
            prompt = self._rng.choice(self._prompts)
        else:
            prompt = generate_prompt(
                self._rng, self._rng.randint(self._words.low, self._words.high)
            )
        tokens = self._rng.randint(self._max_new_tokens.low, self._max_new_tokens.high)
        return PromptPlan(prompt=prompt, max_new_tokens=tokens)
