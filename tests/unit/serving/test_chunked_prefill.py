"""Chunked prefill on a tiny random Llama: a long prompt filled a chunk per step, between
the running batch's decode steps, gives every request the greedy tokens it gets alone."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import torch
from loraland.serving.engine.batch import Batch, ModelRunner
from loraland.serving.engine.loop import Engine, EngineLimits, TokenizerInfo
from loraland.serving.engine.request import EngineEvent, GenerationRequest, RequestState
from loraland.serving.engine.sampling import RowSampler
from loraland.serving.lora.bank import LoraSlotBank
from loraland.serving.params import SamplingParams

GreedyAlone = Callable[[torch.nn.Module, list[int], int], list[int]]
MakeState = Callable[..., RequestState]


class NoAdapters:
    slots = 1

    def acquire(self, adapter: str) -> int | None:
        raise AssertionError("no adapters here")

    def release(self, adapter: str) -> None:
        return None


@pytest.mark.timeout(600)  # importing transformers is slow on a busy machine
def test_chunks_give_the_same_logits_as_one_prefill(
    tiny_llama: torch.nn.Module, request_state: MakeState
) -> None:
    model = tiny_llama
    runner = ModelRunner(model, LoraSlotBank(model, slots=1), pad_id=0)
    prompt = [(7 * i) % 60 + 1 for i in range(23)]
    request = request_state("r", prompt, max_new_tokens=2).request
    sampler = RowSampler.create(request.params, prompt, runner.device)
    whole = runner.prefill([request_state("r", prompt, 2)], [sampler])
    chunked = runner.start_chunked(request_state("r", prompt, 2), sampler)
    results = [runner.chunk(chunked, 5) for _ in range(5)]
    assert all(r is None for r in results[:4]) and results[4] is not None
    torch.testing.assert_close(results[4].logits, whole.logits, rtol=1e-5, atol=1e-5)
    # And the next decode step from either cache agrees too.
    for prefilled in (whole, results[4]):
        prefilled.batch.set_last_tokens([5])
    torch.testing.assert_close(
        runner.decode(results[4].batch), runner.decode(whole.batch), rtol=1e-5, atol=1e-5
    )


#: name -> (prompt ids, new tokens)
Prompts = dict[str, tuple[list[int], int]]


def run_engine(
    model: torch.nn.Module, tokenizer: TokenizerInfo, prompts: Prompts
) -> tuple[dict[str, list[int]], list[str]]:
    """Submit ``prompts`` in order to an engine whose prompts over 8 tokens are chunked;
    each request's tokens, and the order in which tokens arrived (request names)."""
    runner = ModelRunner(model, LoraSlotBank(model, slots=1), pad_id=0)
    limits = EngineLimits(
        max_batch_size=8,
        max_batch_total_tokens=4096,
        max_batch_prefill_tokens=4096,
        max_concurrent_requests=8,
        max_queue_length=8,
        prefill_chunk_tokens=8,
        min_chunk_tokens=4,
    )
    engine = Engine(runner, NoAdapters(), tokenizer, limits)
    got: dict[str, list[int]] = {name: [] for name in prompts}
    done = {name: threading.Event() for name in prompts}
    errors: list[str] = []
    order: list[str] = []

    def sink_for(name: str):  # type: ignore[no-untyped-def]
        def sink(event: EngineEvent) -> None:
            if event.token is not None:
                got[name].append(event.token.id)
                order.append(name)
            if event.error is not None:
                errors.append(event.error)
            if event.finished is not None or event.error is not None:
                done[name].set()

        return sink

    engine.start()
    try:
        for name, (prompt, new_tokens) in prompts.items():
            engine.submit(
                GenerationRequest(
                    name, prompt, SamplingParams(max_new_tokens=new_tokens), None, sink_for(name)
                )
            )
        for name in prompts:
            assert done[name].wait(60), name
    finally:
        engine.stop()
    assert not errors
    return got, order


@pytest.mark.timeout(600)  # importing transformers is slow on a busy machine
def test_engine_interleaves_a_long_prompt_with_the_running_batch(
    tiny_llama: torch.nn.Module,
    greedy_alone: GreedyAlone,
    counting_tokenizer: TokenizerInfo,
) -> None:
    prompts = {
        "short1": ([3, 9, 27, 17], 20),
        "long": ([(11 * i) % 60 + 1 for i in range(41)], 6),
        "short2": ([5, 25, 2], 12),
    }
    got, order = run_engine(tiny_llama, counting_tokenizer, prompts)
    for name, (prompt, new_tokens) in prompts.items():
        assert got[name] == greedy_alone(tiny_llama, prompt, new_tokens), name
    # The long prompt took several steps, during which the short rows kept decoding.
    assert order[: order.index("long")].count("short1") >= 3, order


@pytest.mark.timeout(600)
def test_a_request_done_at_its_first_token_never_joins_the_batch(
    tiny_llama: torch.nn.Module,
    greedy_alone: GreedyAlone,
    counting_tokenizer: TokenizerInfo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A long prompt asking one token is answered from its prefill: merging it would widen
    (and copy) every running row's KV cache to its length, then copy them back."""
    merged: list[str] = []
    merge = Batch.merge

    def spy(first: Batch, second: Batch) -> Batch:
        merged.extend(s.request.request_id for s in second.states)
        return merge(first, second)

    monkeypatch.setattr(Batch, "merge", staticmethod(spy))
    prompts = {
        "running": ([3, 9, 27, 17], 24),
        "long": ([(11 * i) % 60 + 1 for i in range(41)], 1),
        "short": ([5, 25, 2], 1),
        "later": ([7, 1, 4], 6),
    }
    got, _ = run_engine(tiny_llama, counting_tokenizer, prompts)
    for name, (prompt, new_tokens) in prompts.items():
        assert got[name] == greedy_alone(tiny_llama, prompt, new_tokens), name
    assert "long" not in merged and "short" not in merged, merged
