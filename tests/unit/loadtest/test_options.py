"""The suite's flags: parsing, validation messages that name the flag, round trips."""

from __future__ import annotations

import argparse

import pytest
from loraland.loadtest.errors import LoadTestError
from loraland.loadtest.options import (
    ENV_PREFIX,
    IntRange,
    LoadOptions,
    add_arguments,
    expand_adapters,
)


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [("90-110", 90, 110), ("16", 16, 16), (" 3 - 5 ", 3, 5), ("7-7", 7, 7)],
)
def test_int_range_parses(text: str, low: int, high: int) -> None:
    parsed = IntRange.parse(text, "--max-new-tokens")
    assert (parsed.low, parsed.high) == (low, high)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("110-90", "ends below its start"),
        ("0", "greater than or equal to 1"),
        ("ten", "expected N or LOW-HIGH"),
        ("1-2-3", "expected N or LOW-HIGH"),
        ("", "expected N or LOW-HIGH"),
    ],
)
def test_int_range_errors_name_the_flag(text: str, message: str) -> None:
    with pytest.raises(LoadTestError, match="--prompt-words") as info:
        IntRange.parse(text, "--prompt-words")
    assert message in str(info.value)


def test_expand_adapters() -> None:
    assert expand_adapters("") == ()
    assert expand_adapters("a, b,,c") == ("a", "b", "c")
    assert expand_adapters("x,ad-{0..2}-v1") == ("x", "ad-0-v1", "ad-1-v1", "ad-2-v1")
    assert len(expand_adapters("lora-{1..100}")) == 100


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,a", "listed twice"),
        ("ad-{0..1},ad-1", "listed twice"),
        ("ad-{5..1}", "runs backwards"),
        ("ad-{0..1}-{0..1}", "more than one"),
        ("ad-{0..200000}", "over 100000"),
    ],
)
def test_expand_adapters_errors(text: str, message: str) -> None:
    with pytest.raises(LoadTestError, match="--adapters") as info:
        expand_adapters(text)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("flags", "flag"),
    [
        ({"api": "soap"}, "--api"),
        ({"adapter_dist": "pareto"}, "--adapter-dist"),
        ({"zipf_s": 0.0}, "--zipf-s"),
        ({"request_timeout_s": 0.0}, "--request-timeout"),
        ({"overload_backoff_s": -1.0}, "--overload-backoff"),
    ],
)
def test_from_flags_names_the_flag(flags: dict[str, object], flag: str) -> None:
    with pytest.raises(LoadTestError, match=flag):
        LoadOptions.from_flags(**flags)  # type: ignore[arg-type]


def test_defaults_are_the_lora_land_shape() -> None:
    options = LoadOptions.from_flags()
    assert (options.prompt_words.low, options.prompt_words.high) == (90, 110)
    assert (options.max_new_tokens.low, options.max_new_tokens.high) == (90, 110)
    assert options.api == "tgi" and options.seed is None and not options.uses_adapters


def _plain_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_arguments(parser, locust=False)
    return parser


def test_to_args_round_trips_through_the_parser() -> None:
    options = LoadOptions.from_flags(
        api="openai",
        adapters="a,b-{0..3}",
        adapter_dist="zipf",
        zipf_s=1.3,
        prompt_file="/tmp/p.txt",
        prompt_words="20-40",
        max_new_tokens="16",
        ignore_eos=True,
        seed=7,
        request_timeout_s=12.5,
        overload_backoff_s=0.25,
        openai_base_model="base",
    )
    parsed = _plain_parser().parse_args(options.to_args())
    assert LoadOptions.from_namespace(parsed) == options


def test_parser_defaults_give_default_options() -> None:
    assert LoadOptions.from_namespace(_plain_parser().parse_args([])) == LoadOptions()


def test_to_env_uses_the_prefix_and_parses_back() -> None:
    options = LoadOptions.from_flags(adapters="a,b", ignore_eos=True, seed=3, max_new_tokens="8")
    env = options.to_env()
    assert all(key.startswith(ENV_PREFIX) for key in env)
    back = LoadOptions.from_flags(
        api=env[ENV_PREFIX + "API"],
        adapters=env[ENV_PREFIX + "ADAPTERS"],
        adapter_dist=env[ENV_PREFIX + "ADAPTER_DIST"],
        zipf_s=float(env[ENV_PREFIX + "ZIPF_S"]),
        prompt_words=env[ENV_PREFIX + "PROMPT_WORDS"],
        max_new_tokens=env[ENV_PREFIX + "MAX_NEW_TOKENS"],
        ignore_eos=env[ENV_PREFIX + "IGNORE_EOS"],
        seed=int(env[ENV_PREFIX + "SEED"]),
        request_timeout_s=float(env[ENV_PREFIX + "REQUEST_TIMEOUT"]),
        overload_backoff_s=float(env[ENV_PREFIX + "OVERLOAD_BACKOFF"]),
    )
    assert back == options
