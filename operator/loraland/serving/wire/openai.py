"""OpenAI-compatible request and response bodies (completions, chat, models, errors).

``model`` names an adapter; the served base model's id means no adapter. Unknown
fields are accepted and ignored (OpenAI clients add new ones often), but parameters
with a meaning this server cannot honour (``n`` > 1, ``logit_bias``, tools...) are refused.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from loraland.serving.params import SamplingParams

DEFAULT_MAX_TOKENS = 16


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=400)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int | None = Field(default=None, ge=1)
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    # Extensions vLLM and TGI also accept.
    top_k: int | None = Field(default=None, ge=-1)
    repetition_penalty: float | None = Field(default=None, gt=0)

    def unsupported(self) -> str | None:
        checks = {
            "n": self.n not in (None, 1),
            "logit_bias": bool(self.logit_bias),
            "presence_penalty": self.presence_penalty not in (None, 0.0),
            "frequency_penalty": self.frequency_penalty not in (None, 0.0),
        }
        return next((name for name, on in checks.items() if on), None)

    def sampling(self) -> SamplingParams:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        max_tokens = self.max_completion_tokens or self.max_tokens or DEFAULT_MAX_TOKENS
        # OpenAI semantics: temperature defaults to 1 (sampling); 0 means greedy.
        temperature = 1.0 if self.temperature is None else self.temperature
        greedy = temperature == 0
        return SamplingParams(
            max_new_tokens=max_tokens,
            do_sample=not greedy,
            temperature=None if greedy or temperature == 1.0 else temperature,
            top_p=None if greedy or self.top_p in (None, 1.0) else self.top_p,
            top_k=None if greedy or self.top_k in (None, -1, 0) else self.top_k,
            seed=self.seed,
            repetition_penalty=self.repetition_penalty,
            stop=tuple(stops),
        )


class CompletionRequest(_Request):
    prompt: str | list[str] | list[int] = Field(...)
    echo: bool | None = False
    logprobs: int | None = Field(default=None, ge=0, le=5)
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1)

    def unsupported(self) -> str | None:
        several = isinstance(self.prompt, list) and len(self.prompt) > 1
        if several and isinstance(self.prompt[0], str):
            return "prompt (a list of several prompts)"
        extra = {
            "suffix": bool(self.suffix),
            "best_of": self.best_of not in (None, 1),
            "echo": bool(self.echo),
            "logprobs": bool(self.logprobs),
        }
        return next((k for k, on in extra.items() if on), None) or super().unsupported()


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValueError("only text content parts are supported")
            parts.append(part["text"])
        return "".join(parts)


class ChatRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: bool | None = False
    top_logprobs: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None

    def unsupported(self) -> str | None:
        extra = {
            "tools": bool(self.tools),
            "logprobs": bool(self.logprobs),
            "response_format": self.response_format is not None
            and self.response_format.get("type") not in (None, "text"),
        }
        return next((k for k, on in extra.items() if on), None) or super().unsupported()


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str = "loraland"


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatMessageOut
    logprobs: None = None
    finish_reason: Literal["stop", "length"]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str = "loraland"


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: ChatDelta
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str = "loraland"


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "loraland"
    root: str | None = None
    parent: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
