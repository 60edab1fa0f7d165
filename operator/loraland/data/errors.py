"""The user-facing error for data that cannot be used."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset, template or task problem the user has to fix; the message says which."""
