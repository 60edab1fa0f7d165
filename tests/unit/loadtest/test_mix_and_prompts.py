"""Adapter mixes (uniform, Zipf, none) and prompts (generated lengths, files)."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from pathlib import Path

import pytest
from loraland.loadtest.adapters_mix import AdapterMix, zipf_weights
from loraland.loadtest.errors import LoadTestError
from loraland.loadtest.options import IntRange
from loraland.loadtest.prompts import (
    INSTRUCTION,
    VOCABULARY,
    PromptSource,
    generate_prompt,
    load_prompt_file,
)

IDS = [f"ad-{i}" for i in range(10)]


def test_zipf_weights() -> None:
    weights = zipf_weights(4, 1.0)
    assert sum(weights) == pytest.approx(1.0)
    harmonic = 1 + 1 / 2 + 1 / 3 + 1 / 4
    assert weights == pytest.approx(
        [1 / harmonic, 1 / 2 / harmonic, 1 / 3 / harmonic, 1 / 4 / harmonic]
    )
    steep = zipf_weights(4, 2.0)
    assert steep[0] > weights[0] and all(a > b for a, b in itertools.pairwise(steep))
    with pytest.raises(ValueError, match="positive"):
        zipf_weights(3, 0)
    with pytest.raises(ValueError, match="at least one"):
        zipf_weights(0, 1.0)


def _frequencies(mix: AdapterMix, draws: int) -> list[float]:
    counts = Counter(mix.sample() for _ in range(draws))
    return [counts[name] / draws for name in mix.adapters]


@pytest.mark.parametrize("dist", ["uniform", "zipf"])
def test_sampled_frequencies_follow_the_weights(dist: str) -> None:
    mix = AdapterMix(IDS, dist, 1.2, random.Random(0))  # type: ignore[arg-type]
    frequencies = _frequencies(mix, 40_000)
    # 40k draws: a weight's standard error is under 0.0025, so 0.012 is ~5 sigma.
    assert frequencies == pytest.approx(mix.weights(), abs=0.012)
    assert sum(mix.weights()) == pytest.approx(1.0)


def test_zipf_mix_is_hot_headed_and_uniform_is_flat() -> None:
    zipf = _frequencies(AdapterMix(IDS, "zipf", 1.0, random.Random(1)), 20_000)
    flat = _frequencies(AdapterMix(IDS, "uniform", 1.0, random.Random(1)), 20_000)
    assert zipf[0] > 3 * zipf[-1]
    assert max(flat) < 1.5 * min(flat)


def test_none_and_empty_mean_the_base_model() -> None:
    assert {AdapterMix(IDS, "none", 1.0, random.Random(0)).sample() for _ in range(50)} == {None}
    empty = AdapterMix([], "zipf", 1.0, random.Random(0))
    assert empty.sample() is None and empty.weights() == []


def test_seeded_mix_repeats() -> None:
    first = AdapterMix(IDS, "zipf", 1.0, random.Random(7))
    second = AdapterMix(IDS, "zipf", 1.0, random.Random(7))
    drawn = [first.sample() for _ in range(100)]
    assert drawn == [second.sample() for _ in range(100)]
    assert set(drawn) <= set(IDS)


@pytest.mark.parametrize("words", [1, 5, 8, 9, 100])
def test_generated_prompt_has_the_word_count(words: int) -> None:
    prompt = generate_prompt(random.Random(words), words)
    assert len(prompt.split()) == words
    if words > len(INSTRUCTION.split()):
        assert prompt.startswith(INSTRUCTION)
        assert set(prompt.removeprefix(INSTRUCTION).split()) <= set(VOCABULARY)


def test_prompt_source_draws_within_the_ranges() -> None:
    source = PromptSource(random.Random(3), IntRange(low=90, high=110), IntRange(low=20, high=25))
    plans = [source.next() for _ in range(300)]
    words = [len(p.prompt.split()) for p in plans]
    tokens = [p.max_new_tokens for p in plans]
    assert min(words) >= 90 and max(words) <= 110 and len(set(words)) > 10
    assert set(tokens) == set(range(20, 26))


def test_prompt_source_uses_the_file_prompts() -> None:
    prompts = ["one", "two", "three"]
    source = PromptSource(
        random.Random(0), IntRange(low=5, high=5), IntRange(low=4, high=4), prompts
    )
    drawn = {source.next().prompt for _ in range(100)}
    assert drawn == set(prompts)


def test_prompt_files(tmp_path: Path) -> None:
    txt = tmp_path / "p.txt"
    txt.write_text("first prompt\n\n  second prompt  \n")
    assert load_prompt_file(txt) == ["first prompt", "second prompt"]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "a"}\n{"inputs": "b"}\n\n{"text": "c", "label": 1}\n"d"\n')
    assert load_prompt_file(jsonl) == ["a", "b", "c", "d"]
    js = tmp_path / "p.json"
    js.write_text(json.dumps(["x", {"prompt": "y"}]))
    assert load_prompt_file(js) == ["x", "y"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.txt", None, "does not exist"),
        ("empty.txt", "\n  \n", "holds no prompts"),
        ("bad.jsonl", '{"prompt": "a"}\n{nope\n', "line 2: not JSON"),
        ("keys.jsonl", '{"question": "a"}\n', "item 1: expected a non-empty string"),
        ("obj.json", '{"prompt": "a"}', "must hold a JSON list"),
        ("broken.json", "[1,", "not valid JSON"),
        ("num.json", "[1]", "item 1"),
    ],
)
def test_prompt_file_errors(tmp_path: Path, name: str, content: str | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(LoadTestError, match="--prompt-file") as info:
        load_prompt_file(path)
    assert message in str(info.value)
