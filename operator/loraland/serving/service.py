"""Between the wire and the engine: validate, tokenize, pin the adapter, submit, stream.

HTTP (TGI, OpenAI) and gRPC all call :class:`GenerationService`, so a request means the
same thing whichever door it came through, and every client mistake becomes a
:class:`~loraland.serving.errors.ServingError` with a reason before the engine sees it.
Engine events cross from the engine thread into the event loop through an
``asyncio.Queue``; if the consumer stops listening (client disconnect), the ``finally``
of :meth:`ActiveRequest.items` cancels the request, which frees its batch row.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from loraland.serving.config import ServerConfig
from loraland.serving.engine.loop import Engine
from loraland.serving.engine.request import (
    EngineEvent,
    Finished,
    FinishReason,
    GenerationRequest,
    Timing,
    Token,
)
from loraland.serving.errors import GenerationFailed, InvalidRequest
from loraland.serving.lora.manager import AdapterManager
from loraland.serving.params import Limits, SamplingParams, check_sampling
from loraland.serving.telemetry import ServingMetrics


class LockedTokenizer:
    """The HF tokenizer shared by the event loop (encode) and the engine (decode).

    Fast tokenizers are not safe to call from two threads at once ("Already borrowed"),
    so every use goes through one lock; each call is short.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._lock = threading.Lock()
        self.special_ids = frozenset(int(i) for i in tokenizer.all_special_ids)

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        with self._lock:
            return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        with self._lock:
            return str(self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        with self._lock:
            if not getattr(self.tokenizer, "chat_template", None):
                raise InvalidRequest("this model has no chat template; use /v1/completions")
            try:
                text = self.tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True
                )
            except Exception as exc:
                raise InvalidRequest(
                    f"cannot apply the chat template: {exc}", param="messages"
                ) from None
            return str(text)


@dataclass
class Prepared:
    prompt_ids: list[int]
    params: SamplingParams
    adapter: str | None
    arrived: float
    validation_time: float
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class StreamItem:
    token: Token
    prefill: tuple[Token, ...] | None
    finished: Finished | None
    timing: Timing | None = None


@dataclass
class Generation:
    tokens: list[Token]
    prefill: tuple[Token, ...] | None
    finished: Finished


class ActiveRequest:
    """A submitted request: iterate :meth:`items`; :meth:`close` cancels it if unfinished."""

    def __init__(
        self,
        service: GenerationService,
        request_id: str,
        queue: asyncio.Queue[EngineEvent],
        label: str,
    ) -> None:
        self._service = service
        self.request_id = request_id
        self._queue = queue
        self._label = label
        self.done = False

    async def items(self) -> AsyncGenerator[StreamItem, None]:
        metrics = self._service.metrics
        try:
            while not self.done:
                event = await self._queue.get()
                if event.error is not None:
                    self.done = True
                    metrics.requests.labels(adapter=self._label, status="error").inc()
                    raise GenerationFailed(event.error)
                if event.token is None:  # cancelled while queued
                    self.done = True
                    return
                metrics.generated_tokens.labels(adapter=self._label).inc()
                if event.finished is not None:
                    self.done = True
                    status = (
                        "cancelled" if event.finished.reason is FinishReason.CANCELLED else "ok"
                    )
                    metrics.requests.labels(adapter=self._label, status=status).inc()
                yield StreamItem(
                    token=event.token,
                    prefill=event.prefill,
                    finished=event.finished,
                    timing=event.timing,
                )
        finally:
            self.close()

    def close(self) -> None:
        """Idempotent; frees the batch row of a request nobody listens to any more."""
        if not self.done:
            self.done = True
            self._service.engine.cancel(self.request_id)
            self._service.metrics.requests.labels(adapter=self._label, status="cancelled").inc()


class GenerationService:
    def __init__(
        self,
        config: ServerConfig,
        engine: Engine,
        adapters: AdapterManager,
        tokenizer: LockedTokenizer,
        metrics: ServingMetrics,
    ) -> None:
        self.config = config
        self.engine = engine
        self.adapters = adapters
        self.tokenizer = tokenizer
        self.metrics = metrics
        self.limits = Limits(
            max_input_tokens=config.max_input_tokens,
            max_total_tokens=config.max_total_tokens,
            max_stop_sequences=config.max_stop_sequences,
        )

    @property
    def model_id(self) -> str:
        return self.config.model_id

    def adapter_for(self, adapter_id: str | None, source: str | None = None) -> str | None:
        """The adapter a request names; None (the base model) for empty or the model id."""
        if (
            adapter_id is None
            or adapter_id == ""
            or adapter_id
            in (
                self.model_id,
                self.config.base_model,
            )
        ):
            return None
        if source not in (None, "", "local") and self.adapters.get(adapter_id) is None:
            raise InvalidRequest(
                f"adapter_source '{source}' is not enabled on this server; register the "
                "adapter through the admin API or use an id from the adapter roots",
                param="adapter_source",
            )
        return self.adapters.lookup(adapter_id)

    def prepare(
        self,
        prompt: str | list[int],
        params: SamplingParams,
        adapter: str | None,
        *,
        truncate: int | None = None,
        add_special_tokens: bool = True,
        arrived: float | None = None,
    ) -> Prepared:
        """Tokenize and check everything the engine will rely on."""
        start = time.monotonic()
        problems = check_sampling(params, self.limits)
        if problems:
            first = problems[0]
            raise InvalidRequest(
                "; ".join(f"{p.param} {p.message}" for p in problems), param=first.param
            )
        if isinstance(prompt, str):
            if not prompt:
                raise InvalidRequest("inputs must not be empty", param="inputs")
            ids = self.tokenizer.encode(prompt, add_special_tokens=add_special_tokens)
        else:
            ids = list(prompt)
        if not ids:
            raise InvalidRequest("inputs must not be empty", param="inputs")
        if truncate is not None:
            if truncate < 1:
                raise InvalidRequest(
                    f"truncate must be at least 1, got {truncate}", param="truncate"
                )
            ids = ids[-truncate:]
        limit = self.limits.max_input_tokens
        if len(ids) > limit:
            raise InvalidRequest(
                f"inputs must have at most {limit} tokens, got {len(ids)} "
                "(use the truncate parameter to keep the last tokens)",
                param="inputs",
            )
        total = len(ids) + params.max_new_tokens
        if total > self.limits.max_total_tokens:
            raise InvalidRequest(
                f"inputs tokens + max_new_tokens must be at most {self.limits.max_total_tokens}, "
                f"got {len(ids)} + {params.max_new_tokens} = {total}",
                param="max_new_tokens",
            )
        now = time.monotonic()
        return Prepared(
            prompt_ids=ids,
            params=params,
            adapter=adapter,
            arrived=arrived if arrived is not None else start,
            validation_time=now - start,
        )

    async def start(self, prepared: Prepared) -> ActiveRequest:
        """Pin the adapter and submit; errors (overload, failed adapter) raise here,
        before any response is sent, so they keep their own status codes."""
        label = prepared.adapter or "base"
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[EngineEvent] = asyncio.Queue()
        adapter = prepared.adapter

        def sink(event: EngineEvent) -> None:
            # The engine's last event for a request releases its pin, whether or not
            # anyone still reads the stream.
            if adapter is not None and (event.finished is not None or event.error is not None):
                self.adapters.unpin(adapter)
            loop.call_soon_threadsafe(queue.put_nowait, event)

        if adapter is not None:
            await self.adapters.pin(adapter)
        try:
            self.engine.submit(
                GenerationRequest(
                    request_id=prepared.request_id,
                    prompt_ids=prepared.prompt_ids,
                    params=prepared.params,
                    adapter=adapter,
                    sink=sink,
                    arrived=prepared.arrived,
                )
            )
        except BaseException:
            if adapter is not None:
                self.adapters.unpin(adapter)
            self.metrics.requests.labels(adapter=label, status="rejected").inc()
            raise
        return ActiveRequest(self, prepared.request_id, queue, label)

    async def stream(self, prepared: Prepared) -> AsyncIterator[StreamItem]:
        active = await self.start(prepared)
        async for item in active.items():
            yield item

    async def generate(self, prepared: Prepared) -> Generation:
        tokens: list[Token] = []
        prefill = None
        async for item in self.stream(prepared):
            tokens.append(item.token)
            if item.prefill is not None:
                prefill = item.prefill
            if item.finished is not None:
                return Generation(tokens=tokens, prefill=prefill, finished=item.finished)
        raise GenerationFailed("the request ended without a result")
