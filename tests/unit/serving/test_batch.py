"""The running batch on a tiny random Llama: rows that join (shorter or longer than the
batch) and rows that finish (moving later rows into their places) each still get the
greedy tokens they get alone, and the rows that stay are never copied as a whole."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from loraland.serving.engine.batch import Batch, ModelRunner
from loraland.serving.engine.request import RequestState
from loraland.serving.engine.sampling import RowSampler
from loraland.serving.lora.bank import LoraSlotBank

Greedy = Callable[[torch.nn.Module, list[int], int], list[int]]
MakeState = Callable[[str, list[int]], RequestState]


class Driver:
    """Greedy decoding by hand, so the test decides when rows join and leave."""

    def __init__(self, model: torch.nn.Module, make_state: MakeState) -> None:
        self.model = model
        self.make_state = make_state
        self.runner = ModelRunner(self.model, LoraSlotBank(self.model, slots=1), pad_id=0)
        self.tokens: dict[str, list[int]] = {}
        self.prompts: dict[str, list[int]] = {}
        self.batch: Batch | None = None

    def join(self, **prompts: list[int]) -> None:
        states = [self.make_state(name, prompt) for name, prompt in prompts.items()]
        samplers = [
            RowSampler.create(s.request.params, s.request.prompt_ids, self.runner.device)
            for s in states
        ]
        prefilled = self.runner.prefill(states, samplers)
        first = prefilled.logits.argmax(dim=-1).tolist()
        for state, token in zip(states, first, strict=True):
            self.tokens[state.request.request_id] = [token]
            self.prompts[state.request.request_id] = state.request.prompt_ids
        new = prefilled.batch
        new.set_last_tokens(first)
        self.batch = new if self.batch is None else Batch.merge(self.batch, new)

    def step(self, times: int = 1) -> None:
        for _ in range(times):
            assert self.batch is not None
            chosen = self.runner.decode(self.batch).argmax(dim=-1).tolist()
            for state, token in zip(self.batch.states, chosen, strict=True):
                self.tokens[state.request.request_id].append(token)
            self.batch.set_last_tokens(chosen)

    def check(self, greedy_alone: Greedy) -> None:
        """Every row's tokens are what transformers generates for its prompt alone (up
        to an end-of-sequence token, where generate stops and this driver does not)."""
        eos = self.model.config.eos_token_id
        for name, got in self.tokens.items():
            want = greedy_alone(self.model, self.prompts[name], len(got))
            assert got[: len(want)] == want, name
            assert len(want) == len(got) or want[-1] == eos, name

    def finish(self, *names: str) -> None:
        assert self.batch is not None
        rows = {i for i, s in enumerate(self.batch.states) if s.request.request_id in names}
        self.batch = self.batch.drop(rows)


def prompt(seed: int, length: int) -> list[int]:
    return [(seed * 7 + 3 * i) % 60 + 1 for i in range(length)]


@pytest.mark.timeout(600)  # importing transformers is slow on a busy machine
def test_rows_joining_and_leaving_keep_their_greedy_tokens(
    tiny_llama: torch.nn.Module, greedy_alone: Greedy, request_state: MakeState
) -> None:
    d = Driver(tiny_llama, request_state)
    d.join(a=prompt(1, 4), b=prompt(2, 6), c=prompt(3, 3))
    d.step(2)
    d.join(long=prompt(4, 20))  # longer than the batch: the others get a masked gap
    d.step(2)
    d.finish("a")  # a row before others: the last row moves into its place
    assert d.batch is not None and [s.request.request_id for s in d.batch.states] == [
        "long",
        "b",
        "c",
    ]
    d.join(short=prompt(5, 2))  # shorter: right-aligned, padded in front
    d.step(3)
    d.finish("long", "c")
    d.step(2)
    d.check(greedy_alone)


@pytest.mark.timeout(600)
def test_finishing_and_joining_within_capacity_reuse_the_slab(
    tiny_llama: torch.nn.Module, greedy_alone: Greedy, request_state: MakeState
) -> None:
    d = Driver(tiny_llama, request_state)
    d.join(a=prompt(1, 5), b=prompt(2, 5), c=prompt(3, 5), e=prompt(6, 5))
    assert d.batch is not None
    slab = d.batch.cache.slabs[0].buf_k
    d.finish("a")
    d.step()
    d.join(f=prompt(7, 3))
    d.step()
    assert d.batch.cache.slabs[0].buf_k is slab  # no reallocation: rows moved in place
    assert [s.request.request_id for s in d.batch.states] == ["e", "b", "c", "f"]
    d.check(greedy_alone)
