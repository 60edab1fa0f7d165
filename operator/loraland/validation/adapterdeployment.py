"""What makes an AdapterDeployment spec unservable, known before any pod starts.

URIs are parsed as the servers parse them; the builtin server's limits are checked
against its own defaults (a flag the operator passes alone must agree with the defaults
of the others, or ``loraland serve`` exits at start); third-party runtimes need a GPU.
Which schemes each runtime can load is :func:`loraland.controller.runtimes.plan`'s
business; the controller adds that rule (it needs the operator's configuration).
"""

from __future__ import annotations

from collections.abc import Iterable

from loraland.api.adapterdeployment import AdapterDeploymentSpec
from loraland.validation import fields
from loraland.validation.problems import Problem
from loraland.validation.spec import Meta, SpecValidator

#: ``loraland serve``'s defaults (loraland.serving.config.ServerConfig; a unit test keeps
#: the two equal; the controller may not import the serving package).
BUILTIN_MAX_INPUT_TOKENS = 1024
BUILTIN_MAX_TOTAL_TOKENS = 2048


def uris(spec: AdapterDeploymentSpec, _: Meta) -> Iterable[Problem]:
    yield from fields.uri("spec.baseModel.uri", spec.base_model.uri, "model")
    yield from fields.revision(
        "spec.baseModel.revision", spec.base_model.revision, spec.base_model.uri
    )
    yield from fields.secret_ref("spec.baseModel.secretRef", spec.base_model.secret_ref)
    for i, adapter in enumerate(spec.adapters):
        yield from fields.uri(f"spec.adapters[{i}].uri", adapter.uri, "adapter")


def builtin_limits(spec: AdapterDeploymentSpec, _: Meta) -> Iterable[Problem]:
    """Token limits ``loraland serve`` would refuse at start (or the model cannot hold)."""
    if spec.runtime != "builtin":
        return
    s = spec.serving
    total, given_input = s.max_total_tokens, s.max_input_tokens
    if given_input is not None and total is None and given_input >= BUILTIN_MAX_TOTAL_TOKENS:
        yield Problem(
            "spec.serving.maxInputTokens",
            f"{given_input} must be below maxTotalTokens, which defaults to "
            f"{BUILTIN_MAX_TOTAL_TOKENS}; set serving.maxTotalTokens too",
        )
    if total is not None and given_input is None and total <= BUILTIN_MAX_INPUT_TOKENS:
        yield Problem(
            "spec.serving.maxTotalTokens",
            f"{total} must be above maxInputTokens, which defaults to "
            f"{BUILTIN_MAX_INPUT_TOKENS}; set serving.maxInputTokens too",
        )
    facts = fields.builtin_facts(spec.base_model.uri)
    if facts is not None and total is not None and total > facts.max_positions:
        yield Problem(
            "spec.serving.maxTotalTokens",
            f"{total} exceeds the context of {spec.base_model.uri} ({facts.max_positions} tokens)",
        )


def gpus(spec: AdapterDeploymentSpec, _: Meta) -> Iterable[Problem]:
    """vLLM and LoRAX images are CUDA builds: without a GPU their pods crash at start."""
    if spec.runtime in ("vllm", "lorax") and spec.resources.gpus == 0:
        yield Problem(
            "spec.resources.gpus",
            f"runtime {spec.runtime} needs a GPU (at least 1); use runtime: builtin to serve "
            "on CPUs",
        )


def pod(spec: AdapterDeploymentSpec, _: Meta) -> Iterable[Problem]:
    yield from fields.resources("spec.resources", spec.resources)
    yield from fields.image("spec.image", spec.image)


ADAPTERDEPLOYMENT = SpecValidator(AdapterDeploymentSpec, (uris, builtin_limits, gpus, pod))
