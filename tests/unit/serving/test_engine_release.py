"""The engine gives a request's place back before the client hears the request is over.

A closed-loop client asks again the moment its answer ends; if the finished request were
still counted in flight, a client at exactly ``max_concurrent_requests`` would get a
spurious 429. A tiny runner stands in for the model so the engine's own bookkeeping is
what runs: it answers token 1 for every row, so each request ends on ``max_new_tokens``.
"""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest
import torch
from loraland.serving.engine.batch import Batch, Prefilled
from loraland.serving.engine.kv import SlabCache
from loraland.serving.engine.loop import Engine, EngineLimits, TokenizerInfo
from loraland.serving.engine.request import EngineEvent, GenerationRequest, RequestState
from loraland.serving.engine.sampling import RowSampler
from loraland.serving.params import SamplingParams

VOCAB = 4


def _logits(rows: int) -> torch.Tensor:
    logits = torch.zeros(rows, VOCAB)
    logits[:, 1] = 1.0
    return logits


class OneTokenRunner:
    device = torch.device("cpu")

    def __init__(self, fail_prefill: bool = False) -> None:
        self.fail_prefill = fail_prefill

    def prefill(self, states: list[RequestState], samplers: list[RowSampler]) -> Prefilled:
        if self.fail_prefill:
            raise RuntimeError("out of memory")
        rows = len(states)
        batch = Batch(
            states=list(states),
            samplers=list(samplers),
            cache=SlabCache.empty(1, rows, 1, 1, 4, torch.float32, self.device),
            mask=torch.ones(rows, 1, dtype=torch.long),
            positions=torch.ones(rows, dtype=torch.long),
            last_tokens=torch.zeros(rows, dtype=torch.long),
        )
        return Prefilled(batch=batch, logits=_logits(rows), prompt_logprobs=[None] * rows)

    def decode(self, batch: Batch) -> torch.Tensor:
        batch.mask = torch.cat([batch.mask, torch.ones(len(batch), 1, dtype=torch.long)], 1)
        return _logits(len(batch))


class NoSlots:
    slots = 1

    def acquire(self, adapter: str) -> int | None:
        return 1

    def release(self, adapter: str) -> None:
        return None


def _engine(runner: OneTokenRunner, tokenizer: TokenizerInfo) -> Engine:
    limits = EngineLimits(
        max_batch_size=4,
        max_batch_total_tokens=64,
        max_batch_prefill_tokens=64,
        max_concurrent_requests=1,
        max_queue_length=1,
    )
    return Engine(cast(Any, runner), NoSlots(), tokenizer, limits)


def _in_flight_when_done(engine: Engine, request_id: str) -> int:
    """Submit one request; return ``engine.in_flight`` as its last event is delivered."""
    seen: list[int] = []
    done = threading.Event()

    def sink(event: EngineEvent) -> None:
        if event.finished is not None or event.error is not None:
            seen.append(engine.in_flight)
            done.set()

    engine.submit(
        GenerationRequest(
            request_id=request_id,
            prompt_ids=[2, 3],
            params=SamplingParams(max_new_tokens=3),
            adapter=None,
            sink=sink,
        )
    )
    assert done.wait(10), "the request never ended"
    return seen[0]


@pytest.mark.parametrize("fail_prefill", [False, True], ids=["finished", "failed"])
def test_a_request_is_out_of_the_count_when_its_client_hears_the_end(
    fail_prefill: bool, counting_tokenizer: TokenizerInfo
) -> None:
    engine = _engine(OneTokenRunner(fail_prefill=fail_prefill), counting_tokenizer)
    engine.start()
    try:
        # With a limit of one, each next request is admitted only if the last one left.
        for i in range(3):
            assert _in_flight_when_done(engine, f"r{i}") == 0
    finally:
        engine.stop()
