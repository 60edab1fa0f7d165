"""TGI / LoRAX request and response bodies.

Requests accept every field the ``text-generation`` and ``lorax-client`` libraries send
(they serialise all fields, mostly as null). Features this server does not implement
(``best_of`` > 1, ``typical_p``, watermarking, grammars, merged adapters...) are refused
with a 422 naming the field, never silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from loraland.serving.params import SamplingParams


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TGIParameters(_Wire):
    adapter_id: str | None = Field(default=None, max_length=400)
    adapter_source: str | None = Field(default=None, max_length=40)
    adapter_parameters: dict[str, Any] | None = None
    merged_adapters: dict[str, Any] | None = None
    api_token: str | None = None
    do_sample: bool = False
    max_new_tokens: int | None = Field(default=None, ge=1)
    ignore_eos_token: bool = False
    repetition_penalty: float | None = Field(default=None, gt=0)
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    return_full_text: bool | None = False
    stop: list[str] | None = None
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    temperature: float | None = Field(default=None, gt=0)
    top_k: int | None = Field(default=None, gt=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    truncate: int | None = Field(default=None, ge=1)
    typical_p: float | None = None
    best_of: int | None = Field(default=None, ge=1)
    watermark: bool = False
    details: bool = False
    decoder_input_details: bool = False
    top_n_tokens: int | None = None
    return_k_alternatives: int | None = None
    grammar: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None

    def unsupported(self) -> str | None:
        """The first set parameter this server does not implement, if any."""
        checks = {
            "best_of": self.best_of not in (None, 1),
            "typical_p": self.typical_p is not None and self.typical_p != 1.0,
            "watermark": self.watermark,
            "top_n_tokens": bool(self.top_n_tokens),
            "return_k_alternatives": bool(self.return_k_alternatives),
            "grammar": self.grammar is not None,
            "response_format": self.response_format is not None,
            "merged_adapters": self.merged_adapters is not None,
            "adapter_parameters": self.adapter_parameters is not None,
            "frequency_penalty": self.frequency_penalty not in (None, 0.0),
            "presence_penalty": self.presence_penalty not in (None, 0.0),
        }
        return next((name for name, on in checks.items() if on), None)

    def sampling(self, default_max_new_tokens: int) -> SamplingParams:
        return SamplingParams(
            max_new_tokens=self.max_new_tokens or default_max_new_tokens,
            do_sample=self.do_sample,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            seed=self.seed,
            repetition_penalty=self.repetition_penalty,
            stop=tuple(self.stop or ()),
            prompt_logprobs=self.decoder_input_details,
            ignore_eos=self.ignore_eos_token,
        )


class TGIRequest(_Wire):
    inputs: str = Field(min_length=1, max_length=1_000_000)
    parameters: TGIParameters = Field(default_factory=TGIParameters)
    stream: bool = False


class InputToken(BaseModel):
    id: int
    text: str
    logprob: float | None = None


class TokenOut(BaseModel):
    id: int
    text: str
    logprob: float
    special: bool


FinishReasonOut = Literal["length", "eos_token", "stop_sequence"]


class Details(BaseModel):
    finish_reason: FinishReasonOut
    prompt_tokens: int
    generated_tokens: int
    seed: int | None = None
    prefill: list[InputToken] = Field(default_factory=list)
    tokens: list[TokenOut] = Field(default_factory=list)


class GenerateResponse(BaseModel):
    generated_text: str
    details: Details | None = None


class StreamDetails(BaseModel):
    finish_reason: FinishReasonOut
    prompt_tokens: int
    generated_tokens: int
    seed: int | None = None


class StreamResponse(BaseModel):
    token: TokenOut
    generated_text: str | None = None
    details: StreamDetails | None = None


class ErrorResponse(BaseModel):
    error: str
    error_type: str


class Info(BaseModel):
    model_id: str
    model_sha: str | None = None
    model_dtype: str
    model_device_type: str
    model_pipeline_tag: str = "text-generation"
    max_concurrent_requests: int
    max_best_of: int = 1
    max_stop_sequences: int
    max_input_length: int
    max_total_tokens: int
    max_batch_total_tokens: int
    max_batch_prefill_tokens: int
    max_batch_size: int
    max_waiting_tokens: int = 0
    max_loaded_adapters: int
    max_lora_rank: int
    validation_workers: int = 1
    version: str
    sha: str | None = None
    docker_label: str | None = None
    router: str = "loraland"
    request_logger_url: str | None = None
    adapter_source: str = "local"
    eager_prefill: bool = True
