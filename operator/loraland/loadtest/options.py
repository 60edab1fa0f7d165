"""The suite's own options, as Locust custom arguments and as one validated model.

Locust owns the command line (``locust -f loadtests/locustfile.py --api openai ...``), so
:func:`add_arguments` adds our flags to whatever parser Locust hands over; every flag can
also come from an environment variable (``LORALAND_LOADTEST_<FLAG>``), which is how the
in-cluster manifests configure pods. :meth:`LoadOptions.from_namespace` turns the parsed
values into one frozen model once per user, and names the flag when a value is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loraland.loadtest.errors import LoadTestError

ApiKind = Literal["tgi", "openai", "grpc"]
AdapterDist = Literal["uniform", "zipf", "none"]

ENV_PREFIX = "LORALAND_LOADTEST_"

#: The LoRA Land load test's request shape: 90-110 words in, 90-110 new tokens out.
DEFAULT_PROMPT_WORDS = "90-110"
DEFAULT_MAX_NEW_TOKENS = "90-110"

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")
_BRACES = re.compile(r"\{(\d+)\.\.(\d+)\}")


class IntRange(BaseModel):
    """An inclusive integer range; requests draw uniformly from it."""

    model_config = ConfigDict(frozen=True)

    low: int = Field(ge=1)
    high: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.high < self.low:
            raise ValueError(f"range {self.low}-{self.high} ends below its start")
        return self

    @classmethod
    def parse(cls, text: str, flag: str) -> IntRange:
        """``"90-110"`` or ``"16"`` (a fixed value)."""
        match = _RANGE.match(str(text))
        if not match:
            raise LoadTestError(f"{flag}: expected N or LOW-HIGH (e.g. 90-110), got {text!r}")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) else low
        try:
            return cls(low=low, high=high)
        except ValidationError as exc:
            raise LoadTestError(f"{flag}: {text!r}: {_first_message(exc)}") from None

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"


def expand_adapters(text: str) -> tuple[str, ...]:
    """``"a,b,lora-{0..2}"`` -> ``("a", "b", "lora-0", "lora-1", "lora-2")``.

    The brace range is the shell's, so ``--adapters 'ad-{0..99}'`` names 100 adapter ids
    without a file; duplicates are refused because they would skew the mix silently.
    """
    names: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        match = _BRACES.search(item)
        if match is None:
            names.append(item)
            continue
        start, stop = int(match.group(1)), int(match.group(2))
        if stop < start:
            raise LoadTestError(f"--adapters: range {match.group(0)} in {item!r} runs backwards")
        if stop - start >= 100_000:
            raise LoadTestError(f"--adapters: range {match.group(0)} is over 100000 ids")
        head, tail = item[: match.start()], item[match.end() :]
        if _BRACES.search(tail):
            raise LoadTestError(f"--adapters: {item!r} has more than one {{A..B}} range")
        names.extend(f"{head}{i}{tail}" for i in range(start, stop + 1))
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise LoadTestError(f"--adapters: adapter id {name!r} is listed twice")
        seen.add(name)
    return tuple(names)


class LoadOptions(BaseModel):
    """What every simulated user does; one model, validated once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api: ApiKind = "tgi"
    adapters: tuple[str, ...] = ()
    adapter_dist: AdapterDist = "uniform"
    zipf_s: float = Field(default=1.0, gt=0)
    prompt_file: str | None = None
    prompt_words: IntRange = Field(default_factory=lambda: IntRange(low=90, high=110))
    max_new_tokens: IntRange = Field(default_factory=lambda: IntRange(low=90, high=110))
    ignore_eos: bool = False
    seed: int | None = None
    request_timeout_s: float = Field(default=300.0, gt=0)
    overload_backoff_s: float = Field(default=0.5, ge=0)
    openai_base_model: str | None = None

    @property
    def uses_adapters(self) -> bool:
        return bool(self.adapters) and self.adapter_dist != "none"

    def to_args(self) -> list[str]:
        """The same options as Locust command-line flags (what the sweep passes on)."""
        args = [
            "--api",
            self.api,
            "--adapter-dist",
            self.adapter_dist,
            "--zipf-s",
            repr(self.zipf_s),
            "--prompt-words",
            str(self.prompt_words),
            "--max-new-tokens",
            str(self.max_new_tokens),
            "--request-timeout",
            repr(self.request_timeout_s),
            "--overload-backoff",
            repr(self.overload_backoff_s),
        ]
        if self.adapters:
            args += ["--adapters", ",".join(self.adapters)]
        if self.prompt_file:
            args += ["--prompt-file", self.prompt_file]
        if self.ignore_eos:
            args.append("--ignore-eos")
        if self.seed is not None:
            args += ["--seed", str(self.seed)]
        if self.openai_base_model:
            args += ["--openai-base-model", self.openai_base_model]
        return args

    def to_env(self) -> dict[str, str]:
        """The same options as environment variables (what in-cluster pods get)."""
        env = {
            "API": self.api,
            "ADAPTERS": ",".join(self.adapters),
            "ADAPTER_DIST": self.adapter_dist,
            "ZIPF_S": repr(self.zipf_s),
            "PROMPT_WORDS": str(self.prompt_words),
            "MAX_NEW_TOKENS": str(self.max_new_tokens),
            "IGNORE_EOS": "true" if self.ignore_eos else "false",
            "REQUEST_TIMEOUT": repr(self.request_timeout_s),
            "OVERLOAD_BACKOFF": repr(self.overload_backoff_s),
        }
        if self.prompt_file:
            env["PROMPT_FILE"] = self.prompt_file
        if self.seed is not None:
            env["SEED"] = str(self.seed)
        if self.openai_base_model:
            env["OPENAI_BASE_MODEL"] = self.openai_base_model
        return {ENV_PREFIX + key: value for key, value in env.items()}

    @classmethod
    def from_namespace(cls, namespace: Any) -> LoadOptions:
        """Build from parsed flags (Locust's ``parsed_options`` or any argparse namespace)."""
        values: Mapping[str, Any] = vars(namespace)
        return cls.from_flags(
            api=values.get("api", "tgi"),
            adapters=values.get("adapters", ""),
            adapter_dist=values.get("adapter_dist", "uniform"),
            zipf_s=values.get("zipf_s", 1.0),
            prompt_file=values.get("prompt_file", ""),
            prompt_words=values.get("prompt_words", DEFAULT_PROMPT_WORDS),
            max_new_tokens=values.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS),
            ignore_eos=values.get("ignore_eos", False),
            seed=values.get("seed", -1),
            request_timeout_s=values.get("request_timeout", 300.0),
            overload_backoff_s=values.get("overload_backoff", 0.5),
            openai_base_model=values.get("openai_base_model", ""),
        )

    @classmethod
    def from_flags(
        cls,
        *,
        api: str = "tgi",
        adapters: str = "",
        adapter_dist: str = "uniform",
        zipf_s: float = 1.0,
        prompt_file: str | None = "",
        prompt_words: str = DEFAULT_PROMPT_WORDS,
        max_new_tokens: str = DEFAULT_MAX_NEW_TOKENS,
        ignore_eos: bool | str = False,
        seed: int | None = -1,
        request_timeout_s: float = 300.0,
        overload_backoff_s: float = 0.5,
        openai_base_model: str | None = "",
    ) -> LoadOptions:
        """Build from flag values as typed; errors name the flag."""
        raw = {
            "api": api,
            "adapters": expand_adapters(adapters or ""),
            "adapter_dist": adapter_dist,
            "zipf_s": zipf_s,
            "prompt_file": prompt_file or None,
            "prompt_words": IntRange.parse(prompt_words, "--prompt-words"),
            "max_new_tokens": IntRange.parse(max_new_tokens, "--max-new-tokens"),
            "ignore_eos": _truthy(ignore_eos),
            "seed": None if seed is None or int(seed) < 0 else int(seed),
            "request_timeout_s": request_timeout_s,
            "overload_backoff_s": overload_backoff_s,
            "openai_base_model": openai_base_model or None,
        }
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = str(error["loc"][0]) if error["loc"] else "options"
            flag = _FLAG_OF.get(field, field)
            raise LoadTestError(f"{flag}: {error['msg']} (got {raw.get(field)!r})") from None


_FLAG_OF = {
    "api": "--api",
    "adapter_dist": "--adapter-dist",
    "zipf_s": "--zipf-s",
    "request_timeout_s": "--request-timeout",
    "overload_backoff_s": "--overload-backoff",
}


def _truthy(value: bool | str) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def _first_message(exc: ValidationError) -> str:
    message = str(exc.errors()[0]["msg"])
    return message.removeprefix("Value error, ")


class ArgumentParserLike(Protocol):
    def add_argument(self, *args: Any, **kwargs: Any) -> Any: ...


def add_arguments(parser: ArgumentParserLike, *, locust: bool = True) -> None:
    """Add the suite's flags to Locust's parser (``locust=True``) or a plain argparse one.

    Locust's parser is configargparse: ``env_var`` lets pods set every flag from the
    environment, and ``include_in_web_ui`` shows the flag in Locust's start form.
    """

    def add(*names: str, env: str, **kwargs: Any) -> None:
        if locust:
            kwargs["env_var"] = ENV_PREFIX + env
            kwargs.setdefault("include_in_web_ui", True)
        parser.add_argument(*names, **kwargs)

    add(
        "--api",
        env="API",
        choices=["tgi", "openai", "grpc"],
        default="tgi",
        help="Wire protocol: tgi (/generate_stream, TGI and LoRAX), openai "
        "(/v1/chat/completions, stream) or grpc (loraland's GenerateStream).",
    )
    add(
        "--adapters",
        env="ADAPTERS",
        default="",
        help="Adapter ids, comma separated; 'ad-{0..99}' expands to 100 ids. Empty: base model.",
    )
    add(
        "--adapter-dist",
        env="ADAPTER_DIST",
        choices=["uniform", "zipf", "none"],
        default="uniform",
        help="How requests pick among --adapters (none: always the base).",
    )
    add(
        "--zipf-s",
        env="ZIPF_S",
        type=float,
        default=1.0,
        help="Zipf exponent: adapter k (1-based, in --adapters order) gets weight 1/k^s.",
    )
    add(
        "--prompt-file",
        env="PROMPT_FILE",
        default="",
        help="Prompts: .txt (one per line), .jsonl ({'prompt'|'inputs'|'text': ...}) or "
        ".json (a list). Empty: generated prompts of --prompt-words words.",
    )
    add(
        "--prompt-words",
        env="PROMPT_WORDS",
        default=DEFAULT_PROMPT_WORDS,
        help="Words per generated prompt, N or LOW-HIGH (uniform).",
    )
    add(
        "--max-new-tokens",
        env="MAX_NEW_TOKENS",
        default=DEFAULT_MAX_NEW_TOKENS,
        help="max_new_tokens per request, N or LOW-HIGH (uniform).",
    )
    add(
        "--ignore-eos",
        env="IGNORE_EOS",
        action="store_true",
        default=False,
        help="Ask the server to keep generating past end-of-sequence (loraland, LoRAX; "
        "vLLM's ignore_eos for --api openai), so every answer has max_new_tokens tokens.",
    )
    add(
        "--seed",
        env="SEED",
        type=int,
        default=-1,
        help="Seed for prompt, length and adapter choices (-1: random).",
    )
    add(
        "--request-timeout",
        env="REQUEST_TIMEOUT",
        type=float,
        default=300.0,
        help="Seconds before a request counts as failed.",
    )
    add(
        "--overload-backoff",
        env="OVERLOAD_BACKOFF",
        type=float,
        default=0.5,
        help="Seconds a user pauses after a 429 before asking again.",
    )
    add(
        "--openai-base-model",
        env="OPENAI_BASE_MODEL",
        default="",
        help="OpenAI 'model' for base-model requests (default: read from /v1/models).",
    )
