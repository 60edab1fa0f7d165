"""One request's life inside the engine, and the events it sends back. Torch-free.

The engine thread owns :class:`RequestState`; the service only sees :class:`EngineEvent`
objects delivered through the request's ``sink`` (called on the engine thread, so a sink
must hand the event over to its own thread, e.g. with ``loop.call_soon_threadsafe``).

Text is produced incrementally the way TGI does it: decode a short window of ids before
and after the new token and emit only the difference, so multi-byte characters split
over several tokens appear once they are complete.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from loraland.serving.params import SamplingParams


class FinishReason(StrEnum):
    LENGTH = "length"
    EOS = "eos_token"
    STOP = "stop_sequence"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Token:
    id: int
    text: str
    logprob: float | None
    special: bool


@dataclass(frozen=True)
class Timing:
    """Monotonic timestamps (seconds) of one request."""

    arrived: float
    queued: float
    admitted: float | None = None
    first_token: float | None = None
    finished: float | None = None


@dataclass(frozen=True)
class Finished:
    reason: FinishReason
    generated_text: str
    generated_tokens: int
    prompt_tokens: int
    seed: int | None
    timing: Timing


@dataclass(frozen=True)
class EngineEvent:
    """A token, the end of the request, or an error (then nothing else follows)."""

    token: Token | None = None
    #: Prompt tokens with log-probabilities, on the first event when asked for.
    prefill: tuple[Token, ...] | None = None
    finished: Finished | None = None
    error: str | None = None
    #: The request's timestamps, on its first token's event.
    timing: Timing | None = None


Sink = Callable[[EngineEvent], None]


@dataclass
class GenerationRequest:
    """What the service submits: token ids, parameters, adapter, where to send events."""

    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    adapter: str | None
    sink: Sink
    arrived: float = field(default_factory=time.monotonic)


class Detokenizer:
    """Incremental decoding (TGI's prefix/read offsets) plus the accumulated text."""

    def __init__(
        self,
        decode: Callable[[Sequence[int]], str],
        prompt_ids: Sequence[int],
        special_ids: frozenset[int],
    ) -> None:
        self._decode = decode
        self._special = special_ids
        # A little prompt context makes the first tokens decode with their leading spaces.
        context = [i for i in prompt_ids[-5:] if i not in special_ids]
        self._ids: list[int] = list(context)
        self._prefix = 0
        self._read = len(context)
        self.text = ""

    def is_special(self, token_id: int) -> bool:
        return token_id in self._special

    def add(self, token_id: int) -> str:
        """The text ``token_id`` adds (may be empty while a character is incomplete)."""
        if token_id in self._special:
            return ""
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            new = after[len(before) :]
            self._prefix, self._read = self._read, len(self._ids)
            self.text += new
            return new
        return ""


def find_stop(text: str, new_len: int, stops: Sequence[str]) -> int | None:
    """End index of the first stop sequence completed by the last ``new_len`` characters."""
    best: int | None = None
    for stop in stops:
        start = max(0, len(text) - new_len - len(stop) + 1)
        at = text.find(stop, start)
        if at >= 0:
            end = at + len(stop)
            best = end if best is None else min(best, end)
    return best


@dataclass
class RequestState:
    """The engine's view of a running or waiting request."""

    request: GenerationRequest
    detokenizer: Detokenizer
    eos_ids: frozenset[int]
    seed: int | None
    queued: float
    generated: list[int] = field(default_factory=list)
    slot: int = 0
    admitted: float | None = None
    first_token: float | None = None
    last_token_at: float | None = None
    prompt_logprobs: tuple[Token, ...] | None = None
    finished: bool = False
    #: Its place in the in-flight count (and its adapter slot) has been given back.
    released: bool = False

    @property
    def id(self) -> str:
        return self.request.request_id

    @property
    def params(self) -> SamplingParams:
        return self.request.params

    @property
    def reservation(self) -> int:
        return len(self.request.prompt_ids) + self.params.max_new_tokens

    def timing(self, now: float | None = None) -> Timing:
        return Timing(
            arrived=self.request.arrived,
            queued=self.queued,
            admitted=self.admitted,
            first_token=self.first_token,
            finished=now,
        )

    def accept(self, token_id: int, logprob: float | None, now: float) -> EngineEvent:
        """Record one generated token; the event says whether the request is done."""
        if self.first_token is None:
            self.first_token = now
        self.generated.append(token_id)
        special = self.detokenizer.is_special(token_id)
        before = len(self.detokenizer.text)
        text = self.detokenizer.add(token_id)
        reason: FinishReason | None = None
        if token_id in self.eos_ids and not self.params.ignore_eos:
            reason = FinishReason.EOS
        elif self.params.stop:
            end = find_stop(self.detokenizer.text, len(text), self.params.stop)
            if end is not None:
                reason = FinishReason.STOP
                # The answer ends with the stop sequence (as TGI's does), nothing after it.
                self.detokenizer.text = self.detokenizer.text[:end]
                text = self.detokenizer.text[before:]
        if reason is None and len(self.generated) >= self.params.max_new_tokens:
            reason = FinishReason.LENGTH
        token = Token(id=token_id, text=text, logprob=logprob, special=special)
        timing = self.timing() if len(self.generated) == 1 else None
        if reason is None:
            return EngineEvent(token=token, timing=timing)
        self.finished = True
        return EngineEvent(token=token, finished=self.finish(reason, now), timing=timing)

    def finish(self, reason: FinishReason, now: float) -> Finished:
        return Finished(
            reason=reason,
            generated_text=self.detokenizer.text,
            generated_tokens=len(self.generated),
            prompt_tokens=len(self.request.prompt_ids),
            seed=self.seed,
            timing=self.timing(now),
        )
