"""Errors a client can cause, each carrying the HTTP status and TGI ``error_type`` it maps to.

HTTP exception handlers and the gRPC interceptor translate these; anything else that
escapes is a server bug and is reported as such (500 / INTERNAL), never as the client's
fault.
"""

from __future__ import annotations


class ServingError(Exception):
    """Base class: ``status`` is the HTTP code, ``error_type`` the TGI error kind."""

    status: int = 500
    error_type: str = "generation"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The request field the error is about, when there is one (OpenAI ``param``).
        self.param = param


class InvalidRequest(ServingError):
    status = 422
    error_type = "validation"


class NotFound(ServingError):
    status = 404
    error_type = "not_found"


class Overloaded(ServingError):
    status = 429
    error_type = "overloaded"


class GenerationFailed(ServingError):
    """The request was valid but could not be served (e.g. its adapter failed to load)."""

    status = 424
    error_type = "generation"


class Conflict(ServingError):
    status = 409
    error_type = "validation"


class ServerConfigError(Exception):
    """The server's own configuration is wrong: the CLI prints it as one line (exit 2)."""


class NotReady(ServingError):
    """The base model is still loading (or failed to load)."""

    status = 503
    error_type = "overloaded"
