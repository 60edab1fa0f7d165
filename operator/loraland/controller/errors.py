"""What reconcilers raise; the Kopf handlers turn these into Kopf's own errors."""

from __future__ import annotations


class SpecRejected(Exception):
    """The spec cannot be built (permanent until the spec changes). Names the field."""


class RetryLater(Exception):
    """Something outside the spec is not ready yet; try again after ``delay`` seconds."""

    def __init__(self, message: str, delay: float = 10.0) -> None:
        super().__init__(message)
        self.delay = delay


class OperatorError(RuntimeError):
    """A user-facing problem starting the operator or relay (bad flags, no credentials)."""
