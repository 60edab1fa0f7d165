"""Prompt templates: placeholders, rendering and the errors that name the field."""

from __future__ import annotations

import pytest
from loraland.data import DataError
from loraland.data.templates import check_fields, placeholders, render


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Review: {review}\nAnswer:", ["review"]),
        ("{a} and {b} and {a}", ["a", "b"]),
        ("literal {{braces}} and {x}", ["x"]),
        ("no fields at all", []),
        ("{meaning_representation} {sentence-1}", ["meaning_representation", "sentence-1"]),
    ],
)
def test_placeholders(template: str, expected: list[str]) -> None:
    assert placeholders(template) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{x.attr}", r"\{x\.attr\} is not a plain field name"),
        ("{x[0]}", r"\{x\[0\]\} is not a plain field name"),
        ("{x!r}", r"\{x!r\} is not a plain field name"),
        ("{x:>10}", r"\{x:>10\} is not a plain field name"),
        ("{}", r"\{\} is not a plain field name"),
        ("{0}", r"\{0\} is not a plain field name"),
        ("unclosed {x", "promptTemplate is malformed"),
    ],
)
def test_bad_placeholders_are_rejected(template: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        placeholders(template)


def test_unknown_placeholder_names_the_field_and_lists_known_ones() -> None:
    with pytest.raises(DataError) as info:
        check_fields(
            "Q: {question}\nContext: {contxt}", ["question", "context", "output"], "d.jsonl"
        )
    text = str(info.value)
    assert "{contxt}" in text and "d.jsonl" in text and "context, output, question" in text


def test_render_fills_values_and_converts_non_strings() -> None:
    row = {"text": "hi", "n": 3, "flag": True, "tags": ["a", "b"], "obj": {"k": 1}}
    out = render("{text}|{n}|{flag}|{tags}|{obj}|{{x}}", row)
    assert out == 'hi|3|True|["a", "b"]|{"k": 1}|{x}'


@pytest.mark.parametrize("row", [{}, {"text": None}])
def test_render_missing_or_null_field_names_it(row: dict[str, object]) -> None:
    with pytest.raises(DataError, match="missing field 'text'"):
        render("Text: {text}", row)
