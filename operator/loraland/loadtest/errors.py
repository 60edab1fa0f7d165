"""The one user-facing error of the load-test tools: bad flags, files or report folders."""

from __future__ import annotations


class LoadTestError(ValueError):
    """A mistake the user can fix; the message names the flag, file or value at fault."""
