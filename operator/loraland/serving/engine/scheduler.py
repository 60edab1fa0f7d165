"""Which waiting requests join the running batch at the next step. Pure and torch-free.

The batch keeps a left-padded KV cache, so its size is ``rows x longest row``. Each
request reserves ``prompt + max_new_tokens`` positions (its longest possible length), and
a request is admitted only if ``(rows + 1) x longest reservation`` stays within
``max_batch_total_tokens``: the cache can then never outgrow the budget, whatever the
rows generate. Prefill is padded too, so the new rows' ``count x longest prompt`` must fit
``max_batch_prefill_tokens`` (a lone request is always allowed, or it could never run).

Each prefill is a forward pass of its own that stalls every running row, and one
prefill of four prompts costs far less than four of one. So while a batch runs, new
requests are held back until enough of them wait (``waiting_served_ratio`` of the
running rows) or they have waited ``max_waiting_steps`` steps (TGI's idea, in steps);
an idle engine prefills at once, which keeps single-user latency low.

A prefill while rows decode also delays their next token by its whole length, so a
burst of short prompts could stall the batch as badly as one long prompt. While rows
decode, one step prefills at most ``decoding_cap`` padded prompt tokens (the engine
passes its chunk size, the bound a long prompt's chunk has): the rest wait a step or
two, and the running rows keep a token every step (:func:`step_prefill_tokens`).

Adapters need a device slot. Slots held by running rows are never taken away, so a
request whose adapter has no slot and cannot get one waits, and requests behind it
(for other adapters, or the base model) go ahead. A request that does not fit the token
budget stops admission for this step, so big requests are not starved by small ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Waiting:
    request_id: str
    prompt_tokens: int
    max_new_tokens: int
    adapter: str | None = None

    @property
    def reservation(self) -> int:
        return self.prompt_tokens + self.max_new_tokens


@dataclass(frozen=True)
class Running:
    request_id: str
    reservation: int
    adapter: str | None = None


@dataclass(frozen=True)
class Budget:
    max_batch_size: int
    max_batch_total_tokens: int
    max_batch_prefill_tokens: int
    adapter_slots: int


@dataclass(frozen=True)
class Plan:
    admit: tuple[str, ...]
    #: Why the first request left waiting was not admitted (for logs and tests).
    blocked_by: str | None = None


def plan_step(waiting: Sequence[Waiting], running: Iterable[Running], budget: Budget) -> Plan:
    """Admit waiting requests in arrival order while every limit holds."""
    running = list(running)
    rows = len(running)
    longest = max((r.reservation for r in running), default=0)
    adapters = {r.adapter for r in running if r.adapter is not None}
    admitted: list[str] = []
    longest_prompt = 0
    blocked_by: str | None = None

    for item in waiting:
        if rows >= budget.max_batch_size:
            blocked_by = blocked_by or "batch_size"
            break
        new_longest = max(longest, item.reservation)
        if (rows + 1) * new_longest > budget.max_batch_total_tokens and rows > 0:
            blocked_by = blocked_by or "batch_tokens"
            break
        new_prompt = max(longest_prompt, item.prompt_tokens)
        if admitted and (len(admitted) + 1) * new_prompt > budget.max_batch_prefill_tokens:
            blocked_by = blocked_by or "prefill_tokens"
            break
        if item.adapter is not None and item.adapter not in adapters:
            if len(adapters) >= budget.adapter_slots:
                blocked_by = blocked_by or "adapter_slots"
                continue
            adapters.add(item.adapter)
        admitted.append(item.request_id)
        rows += 1
        longest = new_longest
        longest_prompt = new_prompt
    return Plan(admit=tuple(admitted), blocked_by=blocked_by)


def step_prefill_tokens(
    max_batch_prefill_tokens: int, decoding_rows: int, decoding_cap: int
) -> int:
    """Padded prompt tokens one step may prefill: all of ``max_batch_prefill_tokens`` on
    an idle engine, at most ``decoding_cap`` while rows decode (one request always may)."""
    if decoding_rows == 0:
        return max_batch_prefill_tokens
    return min(max_batch_prefill_tokens, decoding_cap)


@dataclass(frozen=True)
class PrefillPolicy:
    waiting_served_ratio: float = 0.3
    max_waiting_steps: int = 4


def prefill_due(waiting: int, running: int, steps_waited: int, policy: PrefillPolicy) -> bool:
    """Whether to prefill waiting requests at this step (see the module docstring)."""
    if waiting == 0:
        return False
    if running == 0 or steps_waited >= policy.max_waiting_steps:
        return True
    return waiting >= policy.waiting_served_ratio * running
