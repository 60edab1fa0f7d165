"""Server-sent events and the two streamed answer shapes (TGI/LoRAX and OpenAI).

:class:`SSEParser` is incremental: bytes go in as the socket delivers them (a frame may be
split anywhere, several may arrive at once) and complete events come out, so the client
can stamp each token the moment its frame is complete. Framing follows the HTML spec:
lines end in LF, CRLF or CR; a blank line ends an event; ``data:`` lines of one event
join with newlines; lines starting with ``:`` are comments (keep-alive pings).

:func:`parse_tgi` and :func:`parse_openai` turn one event's data into a
:class:`StreamChunk`: how many tokens it carries, whether it is the last, the server's own
token count when it sends one, and an error when the server reports one mid-stream.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from typing import Any


class SSEParser:
    """Bytes in, the ``data`` of each complete event out."""

    def __init__(self) -> None:
        self._buffer = ""
        self._data: list[str] = []
        self._pending_cr = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, chunk: bytes) -> list[str]:
        text = self._decoder.decode(chunk)
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split across two chunks
        self._pending_cr = text.endswith("\r")
        self._buffer += text
        events: list[str] = []
        lines = self._buffer.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._buffer = lines.pop()  # the unfinished line, possibly empty
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> str | None:
        if line == "":
            if not self._data:
                return None
            event = "\n".join(self._data)
            self._data = []
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value.removeprefix(" "))
        return None


@dataclass(frozen=True)
class StreamError:
    message: str
    error_type: str

    @property
    def overloaded(self) -> bool:
        return self.error_type == "overloaded"


@dataclass(frozen=True)
class StreamChunk:
    #: Tokens this event carries (0 for role/finish/[DONE] events).
    tokens: int = 0
    text: str = ""
    final: bool = False
    #: The server's own output-token count, when this event reports one.
    generated_tokens: int | None = None
    error: StreamError | None = None


class FrameError(ValueError):
    """An event that is not what the protocol promises (bad JSON, missing fields)."""


def _load(data: str, shape: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        raise FrameError(f"{shape} stream: event is not JSON ({exc.msg}): {data[:120]!r}") from None
    if not isinstance(value, dict):
        raise FrameError(f"{shape} stream: event is not a JSON object: {data[:120]!r}")
    return value


def parse_tgi(data: str) -> StreamChunk:
    """One ``/generate_stream`` event (TGI, LoRAX, loraland).

    Every frame carries one token; the last also carries ``generated_text`` (and
    ``details.generated_tokens`` when the request asked for details). An error frame is
    ``{"error", "error_type"}``.
    """
    frame = _load(data, "TGI")
    if "error" in frame and frame.get("token") is None:
        return StreamChunk(
            error=StreamError(str(frame["error"]), str(frame.get("error_type") or "unknown"))
        )
    token = frame.get("token")
    if not isinstance(token, dict):
        raise FrameError(f"TGI stream: frame without a token: {data[:120]!r}")
    details = frame.get("details")
    generated = details.get("generated_tokens") if isinstance(details, dict) else None
    return StreamChunk(
        tokens=1,
        text=str(token.get("text") or ""),
        final=frame.get("generated_text") is not None,
        generated_tokens=int(generated) if isinstance(generated, int) else None,
    )


def parse_openai(data: str) -> StreamChunk:
    """One ``/v1/chat/completions`` or ``/v1/completions`` stream event.

    OpenAI streams carry text, not tokens: a chunk with non-empty content counts as one
    token (servers send one per token; the role-only opening chunk and the finish chunk
    carry none). A ``usage`` block, when the server sends one, gives the exact count.
    ``[DONE]`` ends the stream.
    """
    if data.strip() == "[DONE]":
        return StreamChunk(final=True)
    chunk = _load(data, "OpenAI")
    error = chunk.get("error")
    if error is not None:
        if isinstance(error, dict):
            return StreamChunk(
                error=StreamError(str(error.get("message")), str(error.get("type") or "unknown"))
            )
        return StreamChunk(error=StreamError(str(error), "unknown"))
    text = ""
    for choice in chunk.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict):
            text += str(delta.get("content") or "")
        else:
            text += str(choice.get("text") or "")
    usage = chunk.get("usage")
    completion = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return StreamChunk(
        tokens=1 if text else 0,
        text=text,
        generated_tokens=int(completion) if isinstance(completion, int) else None,
    )
