"""A kind's validator: parse the spec with its pydantic model, then run its rules.

``SpecValidator(model, rules)`` is the whole mechanism. A rule is a pure function of the
parsed spec and the object's metadata that returns problems (never raises), so rules
compose by listing them, and a new rule set plugs in with ``validator.with_rules(...)``.
Structure errors (types, bounds, unknown fields) come from pydantic, all at once; the
rules run only on a spec that parsed, since they read typed fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from loraland.validation.problems import Checked, Problem, from_validation_error

S = TypeVar("S", bound=BaseModel)


@dataclass(frozen=True)
class Meta:
    """The parts of ``metadata`` rules may read (``name`` is None under generateName)."""

    name: str | None = None
    namespace: str | None = None

    @classmethod
    def of(cls, metadata: Mapping[str, Any] | None) -> Meta:
        metadata = metadata or {}
        return cls(name=metadata.get("name") or None, namespace=metadata.get("namespace") or None)


Rule = Callable[[S, Meta], Iterable[Problem]]


@dataclass(frozen=True)
class SpecValidator(Generic[S]):
    model: type[S]
    rules: tuple[Rule[S], ...] = ()

    def __call__(self, raw: object, meta: Meta | None = None) -> Checked[S]:
        try:
            spec = self.model.model_validate(raw)
        except ValidationError as exc:
            return Checked(None, from_validation_error(exc, "spec"))
        meta = meta or Meta()
        problems = tuple(p for rule in self.rules for p in rule(spec, meta))
        return Checked(spec, problems)

    def with_rules(self, *rules: Rule[S]) -> SpecValidator[S]:
        """This validator with more rules after its own."""
        return replace(self, rules=(*self.rules, *rules))

    def check_body(self, body: Mapping[str, Any]) -> Checked[S]:
        """Validate a whole object (``spec`` and ``metadata``)."""
        return self(body.get("spec"), Meta.of(body.get("metadata")))
