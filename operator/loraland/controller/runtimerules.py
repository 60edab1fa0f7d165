"""What each runtime can run, as (field path, reason) problems (pure).

:func:`runtime_problems` is the one place that knows the pinned runtimes' limits (see
:mod:`loraland.controller.upstream` for the versions and the cited source lines): the
operator's status refusal calls it, and so can an admission webhook, so a spec that would
crash-loop a vLLM or LoRAX pod is refused before any pod exists, with the field named.

Adapters reach vLLM and LoRAX through the adapter agent, which stages any URI loraland
reads (``hf://``, ``s3://``, ``pvc://``) into a volume the server shares, and hands plain
paths to the server as they are (a path inside the server's image). ``builtin://`` names
base models, never adapters. The base model is read by the runtime itself: a hub id or a
path (``hf://``, ``pvc://``, a path); ``builtin://`` and ``s3://`` are loraland's own.
"""

from __future__ import annotations

from collections.abc import Mapping

from loraland.api.adapterdeployment import (
    AdapterDeploymentSpec,
    AdapterDeploymentSpecError,
    AdapterRef,
    Runtime,
    parse_adapter_deployment_spec,
)
from loraland.controller.upstream import (
    LORAX_DEFAULT_TOKEN_CAP,
    VLLM_DEFAULT_MAX_LORA_RANK,
    VLLM_MAX_LORA_RANKS,
)
from loraland.storage.errors import StorageError
from loraland.storage.uri import Scheme, parse_uri

Problem = tuple[str, str]

#: ``loraland serve``'s own default ``--max-lora-rank`` (loraland.serving.config).
BUILTIN_DEFAULT_MAX_LORA_RANK = 64
_BASE_SCHEMES = (Scheme.HF, Scheme.PVC, Scheme.FILE)


def base_model_problem(uri: str, runtime: Runtime) -> str | None:
    """Why ``runtime`` cannot start on base model ``uri`` (None: it can)."""
    try:
        parsed = parse_uri(uri)
    except StorageError as exc:
        return str(exc)
    if runtime == "builtin" or parsed.scheme in _BASE_SCHEMES:
        return None
    return (
        f"runtime {runtime} cannot load {parsed.scheme.value}:// base models; "
        "use hf://ORG/NAME or pvc://CLAIM/PATH (or runtime: builtin)"
    )


def adapter_uri_problem(uri: str, runtime: Runtime) -> str | None:
    """Why ``runtime`` (with its adapter agent) cannot serve the adapter at ``uri``."""
    try:
        parsed = parse_uri(uri)
    except StorageError as exc:
        return str(exc)
    if parsed.scheme is Scheme.BUILTIN:
        return f"{uri} names a base model, not an adapter"
    if parsed.scheme is Scheme.FILE and runtime != "builtin" and not uri.startswith(("/", "file:")):
        # The server resolves a relative path against its own working directory, which
        # is the image's, not anything the operator controls.
        return f"runtime {runtime} needs an absolute path, pvc://, s3:// or hf:// (got {uri})"
    return None


def vllm_rank_for(ranks: Mapping[str, int]) -> int:
    """The smallest rank vLLM accepts that covers every known adapter rank."""
    need = max([VLLM_DEFAULT_MAX_LORA_RANK, *ranks.values()])
    return next((r for r in VLLM_MAX_LORA_RANKS if r >= need), VLLM_MAX_LORA_RANKS[-1])


def effective_max_lora_rank(
    spec: AdapterDeploymentSpec, known_ranks: Mapping[str, int]
) -> int | None:
    """``serving.maxLoraRank``, or a default from the adapters' own ranks where known.

    None: leave the runtime's own default (LoRAX sizes per adapter; the builtin server's
    64 covers the known ranks). vLLM always gets a value, because its default (16) is
    smaller than many published adapters.
    """
    if spec.serving.max_lora_rank is not None:
        return spec.serving.max_lora_rank
    if spec.runtime == "vllm":
        return vllm_rank_for(known_ranks)
    if spec.runtime == "builtin" and known_ranks:
        top = max(known_ranks.values())
        return top if top > BUILTIN_DEFAULT_MAX_LORA_RANK else None
    return None


def runtime_problems(
    spec: AdapterDeploymentSpec, known_ranks: Mapping[str, int] | None = None
) -> list[Problem]:
    """Everything ``spec.runtime`` cannot run, each with the field it is about.

    ``known_ranks`` maps adapter names to their LoRA rank where the operator knows it
    (``fromFineTuneJob`` adapters: the job's ``lora.rank``).
    """
    ranks = dict(known_ranks or {})
    out: list[Problem] = []
    why = base_model_problem(spec.base_model.uri, spec.runtime)
    if why:
        out.append(("spec.baseModel.uri", why))
    for i, adapter in enumerate(spec.adapters):
        if adapter.uri is not None:
            why = adapter_uri_problem(adapter.uri, spec.runtime)
            if why:
                out.append((f"spec.adapters[{i}].uri", why))
    s = spec.serving
    if spec.runtime == "vllm":
        if s.max_lora_rank is not None and s.max_lora_rank not in VLLM_MAX_LORA_RANKS:
            allowed = ", ".join(map(str, VLLM_MAX_LORA_RANKS))
            out.append(
                (
                    "spec.serving.maxLoraRank",
                    f"vLLM accepts only {allowed} (got {s.max_lora_rank})",
                )
            )
        limit = effective_max_lora_rank(spec, ranks)
        for i, adapter in enumerate(spec.adapters):
            rank = ranks.get(adapter.name)
            if rank is not None and limit is not None and rank > limit:
                field = "spec.serving.maxLoraRank" if s.max_lora_rank else "spec.runtime"
                out.append(
                    (
                        f"spec.adapters[{i}]",
                        f"adapter rank {rank} exceeds vLLM's max LoRA rank {limit} "
                        f"(raise {field} or use runtime: builtin)",
                    )
                )
    if spec.runtime == "lorax":
        out += _lorax_token_problems(s.max_input_tokens, s.max_total_tokens)
    if spec.runtime == "builtin" and s.max_lora_rank is not None:
        for i, adapter in enumerate(spec.adapters):
            rank = ranks.get(adapter.name)
            if rank is not None and rank > s.max_lora_rank:
                out.append(
                    (
                        f"spec.adapters[{i}]",
                        f"adapter rank {rank} exceeds spec.serving.maxLoraRank {s.max_lora_rank}",
                    )
                )
    return out


def _lorax_token_problems(max_input: int | None, max_total: int | None) -> list[Problem]:
    """The LoRAX launcher's own checks (launcher/src/main.rs:1633-1671 at 0.12.1).

    It defaults a missing limit from the model's ``max_position_embeddings`` capped at
    4096 total / 4095 input, then exits unless input < total. The operator cannot read
    the model's config, so one limit alone is refused whenever that default could clash.
    """
    if max_input is not None and max_total is None:
        return [
            (
                "spec.serving.maxTotalTokens",
                f"LoRAX needs maxTotalTokens with maxInputTokens ({max_input}): its default "
                f"is at most {LORAX_DEFAULT_TOKEN_CAP} and the launcher exits unless "
                "maxInputTokens < maxTotalTokens",
            )
        ]
    if max_total is not None and max_input is None and max_total <= LORAX_DEFAULT_TOKEN_CAP:
        return [
            (
                "spec.serving.maxInputTokens",
                f"LoRAX needs maxInputTokens with maxTotalTokens {max_total} <= "
                f"{LORAX_DEFAULT_TOKEN_CAP}: its default input limit can reach "
                f"{LORAX_DEFAULT_TOKEN_CAP - 1} and the launcher exits unless "
                "maxInputTokens < maxTotalTokens",
            )
        ]
    return []


def format_problems(problems: list[Problem]) -> str:
    """One message for a status condition or an event: ``field: reason; ...``."""
    return "; ".join(f"{field}: {reason}" for field, reason in problems)


def deploy_problem(raw_spec: object, name: str, uri: str, rank: int | None) -> str | None:
    """Why adding adapter ``name`` (``uri``, LoRA ``rank``) to an AdapterDeployment whose
    spec is ``raw_spec`` would give an adapter its runtime cannot serve (None: it can).

    Used by a FineTuneJob's ``deployTo`` before it touches the target; problems the
    target already had without this adapter are the target's own business.
    """
    try:
        spec = parse_adapter_deployment_spec(raw_spec)
    except AdapterDeploymentSpecError:
        return None  # the target reports its own invalid spec
    others = [a for a in spec.adapters if a.name != name]
    try:
        added = AdapterRef.model_validate({"name": name, "uri": uri})
    except ValueError as exc:
        return str(exc)
    candidate = spec.model_copy(update={"adapters": [*others, added]})
    index = len(others)
    ranks = {name: rank} if rank is not None else {}
    mine = [
        (f, r)
        for f, r in runtime_problems(candidate, ranks)
        if f == f"spec.adapters[{index}]" or f.startswith(f"spec.adapters[{index}].")
    ]
    return format_problems(mine) or None
