"""What the engine needs to know about one request, independent of the wire format.

TGI, OpenAI and gRPC requests are all decoded into :class:`SamplingParams` plus token ids.
Sampling follows TGI: a request samples when ``do_sample`` is set *or* any warper
(temperature != 1, top-k, top-p < 1) is given; otherwise it is greedy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 20
    do_sample: bool = False
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    repetition_penalty: float | None = None
    stop: tuple[str, ...] = ()
    #: Log-probabilities of the prompt tokens (TGI ``decoder_input_details``).
    prompt_logprobs: bool = False
    #: Keep generating past the end-of-sequence token (LoRAX ``ignore_eos_token``).
    ignore_eos: bool = False

    @property
    def sampling(self) -> bool:
        return self.do_sample or self.has_warpers

    @property
    def has_warpers(self) -> bool:
        return (
            (self.temperature is not None and self.temperature != 1.0)
            or (self.top_k is not None and self.top_k > 0)
            or (self.top_p is not None and self.top_p < 1.0)
        )

    @property
    def penalised(self) -> bool:
        return self.repetition_penalty is not None and self.repetition_penalty != 1.0


@dataclass(frozen=True)
class Limits:
    """Per-request limits from the server config (see ServerConfig)."""

    max_input_tokens: int
    max_total_tokens: int
    max_stop_sequences: int


@dataclass
class ParamProblem:
    param: str
    message: str


def check_sampling(params: SamplingParams, limits: Limits) -> list[ParamProblem]:
    """Every problem with ``params``; each names the field and the value it got."""
    problems: list[ParamProblem] = []

    def bad(param: str, message: str) -> None:
        problems.append(ParamProblem(param, message))

    if params.max_new_tokens < 1:
        bad("max_new_tokens", f"must be at least 1, got {params.max_new_tokens}")
    if params.temperature is not None and not params.temperature > 0:
        bad("temperature", f"must be > 0, got {params.temperature}")
    if params.top_k is not None and params.top_k < 1:
        bad("top_k", f"must be >= 1, got {params.top_k}")
    if params.top_p is not None and not 0 < params.top_p <= 1:
        bad("top_p", f"must be in (0, 1], got {params.top_p}")
    if params.repetition_penalty is not None and not params.repetition_penalty > 0:
        bad("repetition_penalty", f"must be > 0, got {params.repetition_penalty}")
    if params.seed is not None and not 0 <= params.seed < 2**63:
        bad("seed", f"must be in [0, 2^63), got {params.seed}")
    if len(params.stop) > limits.max_stop_sequences:
        bad("stop", f"at most {limits.max_stop_sequences} stop sequences, got {len(params.stop)}")
    if any(s == "" for s in params.stop):
        bad("stop", "stop sequences must not be empty")
    return problems
