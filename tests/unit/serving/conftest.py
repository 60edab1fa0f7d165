"""Shared by the serving unit tests that run a real (tiny, random) transformers model."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from loraland.serving.engine.loop import TokenizerInfo
from loraland.serving.engine.request import Detokenizer, GenerationRequest, RequestState
from loraland.serving.lora.native import PagedLoraOp, missing_toolchain, paged_lora_op
from loraland.serving.params import SamplingParams
from loraland.settings import Settings

#: ``request_state(name, prompt, max_new_tokens=8)``: a queued request as the engine holds it.
MakeState = Callable[..., RequestState]

#: ``greedy_alone(model, prompt, new_tokens)``: what transformers generates for the
#: prompt alone, greedy (the oracle for every batching test).
GreedyAlone = Callable[[torch.nn.Module, list[int], int], list[int]]


@pytest.fixture
def tiny_llama() -> torch.nn.Module:
    """A 2-layer random Llama (grouped KV heads), seeded: fast on one CPU thread."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    return LlamaForCausalLM(config).eval()


def _greedy_alone(model: torch.nn.Module, prompt: list[int], new_tokens: int) -> list[int]:
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(  # type: ignore[operator]
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
        )
    return list(out[0, len(prompt) :].tolist())


@pytest.fixture
def greedy_alone() -> GreedyAlone:
    return _greedy_alone


@pytest.fixture
def counting_tokenizer() -> TokenizerInfo:
    """Every id decodes to one "x": the engine tests count tokens, not text."""
    return TokenizerInfo(
        decode=lambda ids: "x" * len(ids), special_ids=frozenset(), eos_ids=frozenset(), pad_id=0
    )


def _request_state(name: str, prompt: list[int], max_new_tokens: int = 8) -> RequestState:
    request = GenerationRequest(
        name, prompt, SamplingParams(max_new_tokens=max_new_tokens), None, print
    )
    return RequestState(
        request=request,
        detokenizer=Detokenizer(str, prompt, frozenset()),
        eos_ids=frozenset(),
        seed=None,
        queued=0.0,
    )


@pytest.fixture
def request_state() -> MakeState:
    return _request_state


@pytest.fixture(scope="session")
def native_lora_op() -> PagedLoraOp:
    """The native decode kernel, built into the cache as the server builds it. Skips only
    where torch's extension builder has no toolchain; with one, a failed build fails."""
    reason = missing_toolchain()
    if reason is not None:
        pytest.skip(f"the native LoRA kernel cannot be built here: {reason}")
    op = paged_lora_op(Settings.from_env().kernels_dir)
    assert op is not None, "a C++ toolchain is here, yet the kernel did not build (see the log)"
    return op
