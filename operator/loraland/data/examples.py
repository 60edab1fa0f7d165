"""Rows -> (prompt, completion) examples, and the seeded shuffle and hold-out split."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from loraland.data.errors import DataError
from loraland.data.records import BadRow, Row
from loraland.data.tasks import Prepare
from loraland.data.templates import as_text, render

T = TypeVar("T")


@dataclass(frozen=True)
class Example:
    prompt: str
    completion: str
    location: str


def build_examples(
    rows: Iterable[Row], template: str, output_field: str, prepare: Prepare | None = None
) -> tuple[list[Example], list[BadRow]]:
    """Render every row; a row that cannot be rendered becomes a BadRow saying why."""
    examples: list[Example] = []
    bad: list[BadRow] = []
    for row in rows:
        try:
            values = prepare(row.values) if prepare is not None else row.values
            prompt = render(template, values)
        except (ValueError, DataError) as exc:
            bad.append(BadRow(row.location, str(exc)))
            continue
        output = values.get(output_field)
        if output is None:
            bad.append(BadRow(row.location, f"missing field '{output_field}'"))
            continue
        completion = as_text(output)
        if not completion.strip():
            bad.append(BadRow(row.location, f"field '{output_field}' is empty"))
            continue
        examples.append(Example(prompt=prompt, completion=completion, location=row.location))
    return examples, bad


def shuffled(items: Sequence[T], seed: int) -> list[T]:
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


def hold_out(items: Sequence[T], fraction: float) -> tuple[list[T], list[T]]:
    """Split off ``fraction`` (at least one item when fraction > 0, never all) as eval."""
    if fraction <= 0 or len(items) < 2:
        return list(items), []
    count = min(max(1, round(len(items) * fraction)), len(items) - 1)
    return list(items[count:]), list(items[:count])


def infer_labels(examples: Iterable[Example], limit: int = 32) -> tuple[str, ...]:
    """Outputs look like class labels when there are few distinct short ones."""
    seen: set[str] = set()
    for example in examples:
        text = example.completion.strip()
        if len(text.split()) > 4:
            return ()
        seen.add(text)
        if len(seen) > limit:
            return ()
    return tuple(sorted(seen)) if len(seen) >= 2 else ()
