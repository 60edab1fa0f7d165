"""The one error type for anything that goes wrong turning a URI into files."""

from __future__ import annotations


class StorageError(Exception):
    """A URI could not be resolved, fetched or written.

    The message always names the URI and, where there is one, what to do about it,
    so the CLI can print it as a single readable line.
    """

    def __init__(self, uri: str, problem: str, hint: str | None = None) -> None:
        self.uri = uri
        self.problem = problem
        self.hint = hint
        text = f"{uri}: {problem}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)
