"""Prompt templates: ``{field}`` placeholders filled from a row's fields.

Deliberately smaller than ``str.format``: a placeholder is a plain field name, with no
attribute access, indexing, conversion or format spec, so a template cannot reach into
Python objects and every placeholder can be checked against the dataset's fields before
any row is read. ``{{`` and ``}}`` are literal braces.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from string import Formatter
from typing import Any

from loraland.data.errors import DataError

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def placeholders(template: str) -> list[str]:
    """The field names a template uses, in order of first use."""
    names: list[str] = []
    try:
        parsed = list(Formatter().parse(template))
    except ValueError as exc:
        raise DataError(
            f"promptTemplate is malformed: {exc} (write {{{{ and }}}} for braces)"
        ) from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if not _FIELD.match(field) or spec or conversion:
            shown = (
                "{"
                + field
                + (f"!{conversion}" if conversion else "")
                + (f":{spec}" if spec else "")
                + "}"
            )
            raise DataError(
                f"promptTemplate placeholder {shown} is not a plain field name "
                "(use {field}; write {{ and }} for literal braces)"
            )
        if field not in names:
            names.append(field)
    return names


def check_fields(template: str, available: Iterable[str], source: str) -> None:
    """Fail naming the first placeholder that is no field of the data."""
    known = list(available)
    for name in placeholders(template):
        if name not in known:
            raise DataError(
                f"promptTemplate placeholder {{{name}}} is not a field of {source} "
                f"(fields: {', '.join(sorted(known)) or 'none'})"
            )


def as_text(value: Any) -> str:
    """Fields may be numbers, booleans, lists or objects (Parquet, hub datasets)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def render(template: str, values: Mapping[str, Any]) -> str:
    """Fill the template. A missing or null field raises a DataError naming it."""
    out: list[str] = []
    for literal, field, _, _ in Formatter().parse(template):
        out.append(literal)
        if field is None:
            continue
        value = values.get(field)
        if value is None:
            raise DataError(f"missing field '{field}'")
        out.append(as_text(value))
    return "".join(out)
