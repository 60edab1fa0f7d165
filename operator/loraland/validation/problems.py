"""One shape for every refusal: ``(field path, reason)`` pairs, formatted one way.

A spec is checked once and every problem is reported together, each naming the field by
its wire path (``spec.adapters[0].uri``), so a user fixes them all in one edit. The same
string is the admission webhook's refusal and the ``SpecValid`` condition's message, so
what ``kubectl apply`` says and what ``kubectl get`` shows never drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import ValidationError

S = TypeVar("S")

#: Separates problems in one message (a field path never contains it).
SEPARATOR = "; "


@dataclass(frozen=True)
class Problem:
    """One bad field: where (a dotted wire path, ``[i]`` for list items) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


@dataclass(frozen=True)
class Checked(Generic[S]):
    """A validated spec, or the problems that stop it (``spec`` is None when unparsable)."""

    spec: S | None
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def message(self) -> str:
        return format_problems(self.problems)


def format_problems(problems: Iterable[Problem]) -> str:
    """``path: reason; path: reason`` in the order found, duplicates dropped."""
    return SEPARATOR.join(dict.fromkeys(str(p) for p in problems))


def join_path(prefix: str, loc: Sequence[int | str]) -> str:
    """``prefix`` + a pydantic location: names dotted, list indices in brackets."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before", "function-wrap"):
            continue  # validator wrappers pydantic puts in a location; not fields
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def from_validation_error(exc: ValidationError, prefix: str = "spec") -> tuple[Problem, ...]:
    """pydantic's errors as problems naming the wire (camelCase) path."""
    problems = []
    for err in exc.errors():
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(Problem(join_path(prefix, err["loc"]), message))
    return tuple(problems)
