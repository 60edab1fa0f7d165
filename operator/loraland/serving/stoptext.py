"""OpenAI's stop-sequence convention on top of TGI's. Pure.

The engine ends a request when a stop sequence appears and, like TGI, keeps the stop
sequence at the end of ``generated_text``. OpenAI answers leave it out, and so must their
streams, which means holding back any tail of the text that could still turn into a
stop sequence until the next token shows whether it does.
"""

from __future__ import annotations

from collections.abc import Sequence


def strip_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` without the stop sequence it ends with (unchanged if none)."""
    for stop in sorted(stops, key=len, reverse=True):
        if stop and text.endswith(stop):
            return text[: -len(stop)]
    return text


def safe_prefix_len(text: str, stops: Sequence[str]) -> int:
    """How much of ``text`` can be shown now: nothing from a complete stop sequence on,
    and not a tail that may still become one."""
    for stop in stops:
        at = text.find(stop) if stop else -1
        if at >= 0:
            text = text[:at]
    hold = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:size]):
                hold = max(hold, size)
                break
    return len(text) - hold


class StopStreamer:
    """Turns the growing generated text into OpenAI stream deltas."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = list(stops)
        self.text = ""
        self.sent = 0

    def push(self, piece: str) -> str:
        self.text += piece
        visible = safe_prefix_len(self.text, self.stops)
        delta = self.text[self.sent : visible]
        self.sent = max(self.sent, visible)
        return delta

    def finish(self, final_text: str, stopped: bool) -> str:
        """The rest to send once the request ended (``final_text`` is the engine's)."""
        end = strip_stop(final_text, self.stops) if stopped else final_text
        delta = end[self.sent :]
        self.sent = len(end)
        return delta
