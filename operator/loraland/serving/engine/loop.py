"""The step loop: iteration-level continuous batching on one thread.

Every iteration: take in new requests and cancellations; let the scheduler pick which
waiting requests join (token budget, batch size, adapter slots); prefill them as one
left-padded batch and merge it into the running batch; decode one token for every row;
send each row its token; drop the rows that finished or whose client went away. A new
request therefore starts at the next step, not when the current batch drains.

Admission control happens in :meth:`Engine.submit`, on the caller's thread: past
``max_concurrent_requests`` in flight, or ``max_queue_length`` waiting, it raises
:class:`~loraland.serving.errors.Overloaded` at once instead of queueing without bound.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from loraland.serving.engine.batch import Batch, Chunked, ModelRunner, Prefilled
from loraland.serving.engine.request import (
    Detokenizer,
    EngineEvent,
    FinishReason,
    GenerationRequest,
    RequestState,
    Token,
)
from loraland.serving.engine.sampling import RowSampler, next_tokens
from loraland.serving.engine.scheduler import (
    Budget,
    PrefillPolicy,
    Running,
    Waiting,
    plan_step,
    prefill_due,
    step_prefill_tokens,
)
from loraland.serving.errors import Overloaded
from loraland.serving.telemetry import ServingMetrics

log = logging.getLogger(__name__)


class SlotProvider(Protocol):
    """Device slots for adapters (see lora/manager.py); called on the engine thread only."""

    slots: int

    def acquire(self, adapter: str) -> int | None: ...

    def release(self, adapter: str) -> None: ...


@dataclass(frozen=True)
class EngineLimits:
    max_batch_size: int
    max_batch_total_tokens: int
    max_batch_prefill_tokens: int
    max_concurrent_requests: int
    max_queue_length: int
    prefill: PrefillPolicy = field(default_factory=PrefillPolicy)
    #: Prompts longer than this are prefilled in chunks, one chunk per step, between the
    #: running batch's decode steps; a chunk is about as many tokens as the batch has
    #: rows (at least ``min_chunk_tokens``), so a step costs at most about twice a plain
    #: decode step and running rows never wait for a whole long prompt. It also caps the
    #: padded prompt tokens of a step's prefill while rows decode, so a burst of short
    #: prompts is spread over a few steps instead of stalling the batch.
    prefill_chunk_tokens: int = 256
    min_chunk_tokens: int = 32


@dataclass(frozen=True)
class TokenizerInfo:
    decode: Callable[[Sequence[int]], str]
    special_ids: frozenset[int]
    eos_ids: frozenset[int]
    pad_id: int


class Engine:
    def __init__(
        self,
        runner: ModelRunner,
        slots: SlotProvider,
        tokenizer: TokenizerInfo,
        limits: EngineLimits,
        metrics: ServingMetrics | None = None,
    ) -> None:
        self.runner = runner
        self.slots = slots
        self.tokenizer = tokenizer
        self.limits = limits
        self.metrics = metrics or ServingMetrics()
        self._cond = threading.Condition()
        self._inbox: list[RequestState] = []
        self._cancels: set[str] = set()
        self._in_flight = 0
        self._waiting_count = 0
        self._waiting: OrderedDict[str, RequestState] = OrderedDict()
        self._batch: Batch | None = None
        self._chunked: Chunked | None = None
        self._stop = False
        self._thread: threading.Thread | None = None
        self.steps = 0
        self._steps_waited = 0

    # -- called from other threads -------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="loraland-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def queue_depth(self) -> int:
        return self._waiting_count

    def submit(self, request: GenerationRequest) -> None:
        """Queue ``request`` or raise Overloaded; events then arrive through its sink."""
        with self._cond:
            if self._stop:
                raise Overloaded("the server is shutting down")
            if self._in_flight >= self.limits.max_concurrent_requests:
                self.metrics.rejected.labels(reason="concurrency").inc()
                raise Overloaded(
                    f"too many concurrent requests (limit {self.limits.max_concurrent_requests})"
                )
            if self._waiting_count >= self.limits.max_queue_length:
                self.metrics.rejected.labels(reason="queue").inc()
                raise Overloaded(f"the queue is full (limit {self.limits.max_queue_length})")
            state = RequestState(
                request=request,
                detokenizer=Detokenizer(
                    self.tokenizer.decode, request.prompt_ids, self.tokenizer.special_ids
                ),
                eos_ids=self.tokenizer.eos_ids,
                seed=None,
                queued=time.monotonic(),
            )
            self._in_flight += 1
            self._waiting_count += 1
            self.metrics.set_queue(self._waiting_count)
            self._inbox.append(state)
            self._cond.notify_all()

    def cancel(self, request_id: str) -> None:
        """The client went away: free its row (or queue place) at the next step."""
        with self._cond:
            self._cancels.add(request_id)
            self._cond.notify_all()

    # -- engine thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while (
                    not self._stop
                    and not self._inbox
                    and not self._cancels
                    and (self._batch is None and self._chunked is None and not self._waiting)
                ):
                    self._cond.wait()
                if self._stop:
                    break
                for state in self._inbox:
                    self._waiting[state.id] = state
                self._inbox.clear()
                cancels, self._cancels = self._cancels, set()
            self._apply_cancels(cancels)
            try:
                self._step()
            except Exception as exc:
                log.exception("engine step failed")
                self._fail_batch(f"generation failed: {type(exc).__name__}: {exc}")
            if self._batch is None and self._chunked is None and self._waiting:
                # Nothing could be admitted (should be rare): do not spin.
                with self._cond:
                    self._cond.wait(0.05)
        self._shutdown()

    def _step(self) -> None:
        self._admit()
        self._advance_chunked()
        if self._batch is not None:
            batch = self._batch
            logits = self.runner.decode(batch)
            self.metrics.batch_size.observe(len(batch))
            self.steps += 1
            choices = next_tokens(logits, batch.samplers)
            self._emit(batch, choices)
        self.metrics.set_running(len(self._batch) if self._batch else 0, self.kv_usage())

    def kv_usage(self) -> float:
        """Fraction of the KV-cache token budget the running batch holds."""
        batch = self._batch
        if batch is None:
            return 0.0
        return min(1.0, batch.kv_tokens / max(1, self.limits.max_batch_total_tokens))

    def _is_long(self, state: RequestState) -> bool:
        return (
            len(state.request.prompt_ids) > self.limits.prefill_chunk_tokens
            and not state.params.prompt_logprobs
        )

    def _running(self) -> list[Running]:
        states = list(self._batch.states) if self._batch is not None else []
        if self._chunked is not None:
            states.append(self._chunked.state)
        return [Running(s.id, s.reservation, s.request.adapter) for s in states]

    def _start_chunked(self) -> None:
        """Move the oldest waiting long prompt into the chunk lane (one at a time)."""
        if self._chunked is not None:
            return
        state = next((s for s in self._waiting.values() if self._is_long(s)), None)
        if state is None:
            return
        running = self._running()
        longest = max([r.reservation for r in running] + [state.reservation])
        if running and (
            len(running) + 1 > self.limits.max_batch_size
            or (len(running) + 1) * longest > self.limits.max_batch_total_tokens
        ):
            return
        if state.request.adapter is not None:
            try:
                slot = self.slots.acquire(state.request.adapter)
            except KeyError:
                self._drop_waiting(state)
                self._finish_with_error(state, f"adapter '{state.request.adapter}' was unloaded")
                return
            if slot is None:
                return
            state.slot = slot
        self._drop_waiting(state)
        self._admitted([state])
        sampler = RowSampler.create(state.params, state.request.prompt_ids, self.runner.device)
        state.seed = sampler.seed
        self._chunked = self.runner.start_chunked(state, sampler)

    def _drop_waiting(self, state: RequestState) -> None:
        del self._waiting[state.id]
        with self._cond:
            self._waiting_count -= 1
            self.metrics.set_queue(self._waiting_count)

    def _admitted(self, states: list[RequestState]) -> None:
        now = time.monotonic()
        for state in states:
            state.admitted = now
            self.metrics.queue_time.observe(now - state.queued)

    def _advance_chunked(self) -> None:
        chunked = self._chunked
        if chunked is None:
            return
        rows = len(self._batch) if self._batch is not None else 0
        size = self.limits.prefill_chunk_tokens
        if rows:
            size = min(size, max(self.limits.min_chunk_tokens, rows))
        try:
            prefilled = self.runner.chunk(chunked, size)
        except Exception as exc:
            log.exception("chunked prefill failed")
            self._chunked = None
            self._finish_with_error(chunked.state, f"prefill failed: {type(exc).__name__}: {exc}")
            return
        if prefilled is not None:
            self._chunked = None
            self._join(prefilled, [chunked.sampler])

    def _join(self, prefilled: Prefilled, samplers: list[RowSampler]) -> None:
        """Send freshly prefilled rows their first token; those not done join the batch."""
        choices = next_tokens(prefilled.logits, samplers)
        new = prefilled.batch
        for row, state in enumerate(new.states):
            logprobs = prefilled.prompt_logprobs[row]
            if logprobs is not None:
                state.prompt_logprobs = self._prompt_tokens(state, logprobs)
        # A row done at its first token (one new token asked, or EOS at once) never joins:
        # merging it would widen every running row's KV cache to its prompt, and copy
        # them all twice, for nothing (a long prompt made the whole batch step ~4x slower).
        done = self._deliver(new, choices)
        if len(done) == len(new):
            return
        if done:
            new = new.drop(done)
        self._batch = new if self._batch is None else Batch.merge(self._batch, new)

    def _admit(self) -> None:
        self._start_chunked()
        batch = self._batch
        running_rows = len(batch) if batch is not None else 0
        if not prefill_due(
            len(self._waiting), running_rows, self._steps_waited, self.limits.prefill
        ):
            self._steps_waited += 1 if self._waiting else 0
            return
        self._steps_waited = 0
        running = self._running()
        waiting = [
            Waiting(s.id, len(s.request.prompt_ids), s.params.max_new_tokens, s.request.adapter)
            for s in self._waiting.values()
            if not self._is_long(s)
        ]
        plan = plan_step(
            waiting,
            running,
            Budget(
                max_batch_size=self.limits.max_batch_size,
                max_batch_total_tokens=self.limits.max_batch_total_tokens,
                max_batch_prefill_tokens=step_prefill_tokens(
                    self.limits.max_batch_prefill_tokens,
                    running_rows,
                    self.limits.prefill_chunk_tokens,
                ),
                adapter_slots=self.slots.slots,
            ),
        )
        admitted: list[RequestState] = []
        for request_id in plan.admit:
            state = self._waiting[request_id]
            if state.request.adapter is not None:
                try:
                    slot = self.slots.acquire(state.request.adapter)
                except KeyError:  # unloaded after this request was queued
                    del self._waiting[request_id]
                    with self._cond:
                        self._waiting_count -= 1
                    self._finish_with_error(
                        state, f"adapter '{state.request.adapter}' was unloaded"
                    )
                    continue
                if slot is None:  # every slot is busy after all: try again next step
                    continue
                state.slot = slot
            del self._waiting[request_id]
            admitted.append(state)
        if not admitted:
            return
        with self._cond:
            self._waiting_count -= len(admitted)
            self.metrics.set_queue(self._waiting_count)
        self._admitted(admitted)
        samplers = []
        for state in admitted:
            sampler = RowSampler.create(state.params, state.request.prompt_ids, self.runner.device)
            state.seed = sampler.seed
            samplers.append(sampler)
        try:
            prefilled = self.runner.prefill(admitted, samplers)
        except Exception as exc:
            log.exception("prefill failed")
            for state in admitted:
                self._finish_with_error(state, f"prefill failed: {type(exc).__name__}: {exc}")
            return
        self._join(prefilled, samplers)

    def _prompt_tokens(self, state: RequestState, logprobs: list[float]) -> tuple[Token, ...]:
        ids = state.request.prompt_ids
        decode = self.tokenizer.decode
        tokens = [Token(ids[0], decode([ids[0]]), None, ids[0] in self.tokenizer.special_ids)]
        for token_id, logprob in zip(ids[1:], logprobs, strict=True):
            tokens.append(
                Token(token_id, decode([token_id]), logprob, token_id in self.tokenizer.special_ids)
            )
        return tuple(tokens)

    def _emit(self, batch: Batch, choices: list[tuple[int, float]]) -> None:
        """Hand each running row its token; drop rows that are done."""
        done = self._deliver(batch, choices)
        if done:
            self._remove_rows(done)

    def _deliver(self, batch: Batch, choices: list[tuple[int, float]]) -> set[int]:
        """Hand each row of ``batch`` its token; the rows that are done (released)."""
        now = time.monotonic()
        last = batch.last_tokens.tolist()
        done = set()
        for row, (token_id, logprob) in enumerate(choices):
            state = batch.states[row]
            last[row] = token_id
            previous = state.last_token_at
            event = state.accept(token_id, logprob, now)
            if state.prompt_logprobs is not None and len(state.generated) == 1:
                event = dataclasses.replace(event, prefill=state.prompt_logprobs)
            self._observe_token(state, previous, now)
            if state.finished:
                # Before the client hears it is done: a client that asks again at once
                # must not find its finished request still counted against the limit.
                self._release(state)
                done.add(row)
            self._send(state, event)
        batch.set_last_tokens(last)
        return done

    def _observe_token(self, state: RequestState, previous: float | None, now: float) -> None:
        if previous is None:
            self.metrics.ttft.observe(now - state.request.arrived)
        else:
            self.metrics.inter_token.observe(now - previous)
        state.last_token_at = now
        if state.finished:
            self.metrics.request_duration.observe(now - state.request.arrived)

    def _remove_rows(self, rows: set[int]) -> None:
        batch = self._batch
        assert batch is not None
        for row in rows:
            self._release(batch.states[row])
        self._batch = batch.drop(rows) if len(rows) < len(batch) else None

    def _release(self, state: RequestState) -> None:
        if state.released:
            return
        state.released = True
        if state.request.adapter is not None and state.slot:
            self.slots.release(state.request.adapter)
            state.slot = 0
        with self._cond:
            self._in_flight -= 1

    def _apply_cancels(self, cancels: set[str]) -> None:
        if not cancels:
            return
        now = time.monotonic()
        for request_id in cancels & set(self._waiting):
            state = self._waiting.pop(request_id)
            with self._cond:
                self._waiting_count -= 1
                self._in_flight -= 1
                self.metrics.set_queue(self._waiting_count)
            self._send(state, EngineEvent(finished=state.finish(FinishReason.CANCELLED, now)))
        chunked = self._chunked
        if chunked is not None and chunked.state.id in cancels:
            self._chunked = None
            state = chunked.state
            self._release(state)
            self._send(state, EngineEvent(finished=state.finish(FinishReason.CANCELLED, now)))
        if self._batch is not None:
            rows = {i for i, s in enumerate(self._batch.states) if s.id in cancels}
            for row in rows:
                state = self._batch.states[row]
                self._send(state, EngineEvent(finished=state.finish(FinishReason.CANCELLED, now)))
            if rows:
                self._remove_rows(rows)

    def _send(self, state: RequestState, event: EngineEvent) -> None:
        try:
            state.request.sink(event)
        except Exception:
            log.exception("event sink of %s failed", state.id)

    def _finish_with_error(self, state: RequestState, message: str) -> None:
        self._release(state)
        self._send(state, EngineEvent(error=message))

    def _fail_batch(self, message: str) -> None:
        chunked, self._chunked = self._chunked, None
        if chunked is not None:
            self._finish_with_error(chunked.state, message)
        batch, self._batch = self._batch, None
        if batch is None:
            return
        for state in batch.states:
            self._finish_with_error(state, message)

    def _shutdown(self) -> None:
        self._fail_batch("the server is shutting down")
        for state in list(self._waiting.values()) + self._inbox:
            self._send(state, EngineEvent(error="the server is shutting down"))
        self._waiting.clear()
        self._inbox.clear()
