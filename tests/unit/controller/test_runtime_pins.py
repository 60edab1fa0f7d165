"""vLLM and LoRAX as their pinned releases expect them: arguments, limits, sidecar.

The argument check reads the CLI tables in loraland.controller.upstream (transcribed from
vLLM 0.33.0 and LoRAX 0.12.1, each option citing its source line). Each test named after
a defect of the issue fails on the code before it.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from loraland.api.adapterdeployment import AdapterDeploymentSpec
from loraland.controller.config import OperatorConfig
from loraland.controller.podspec import Owner
from loraland.controller.runtimerules import (
    deploy_problem,
    effective_max_lora_rank,
    runtime_problems,
)
from loraland.controller.runtimes import STAGE_DIR, RuntimeSpecError, plan
from loraland.controller.serving import (
    AGENT_CONTAINER,
    build_adapters_configmap,
    build_deployment,
    optional_adapters,
)
from loraland.controller.upstream import (
    LORAX_OPTIONS,
    VLLM_DEFAULT_MAX_LORAS,
    VLLM_MAX_LORA_RANKS,
    VLLM_OPTIONS,
    check_args,
)

SPECS: list[dict[str, Any]] = [
    {},
    {"serving": {"maxLoadedAdapters": 32, "maxLoraRank": 64, "maxBatchSize": 16}},
    {
        "baseModel": {"uri": "hf://mistralai/Mistral-7B-v0.1", "revision": "main"},
        "serving": {
            "maxInputTokens": 2048,
            "maxTotalTokens": 4096,
            "maxConcurrentRequests": 128,
            "maxLoadedAdapters": 4,
        },
    },
]


def _spec(adep_spec: Any, runtime: str, extra: dict[str, Any]) -> AdapterDeploymentSpec:
    base = {"baseModel": {"uri": "hf://mistralai/Mistral-7B-v0.1"}, "runtime": runtime}
    spec: AdapterDeploymentSpec = adep_spec(**{**base, **extra})
    return spec


@pytest.mark.parametrize("extra", SPECS)
def test_every_vllm_argument_is_in_the_pinned_cli(
    adep_spec: Any, config: OperatorConfig, extra: dict[str, Any]
) -> None:
    # vLLM has no input-only limit (the builtin and LoRAX do).
    serving = {k: v for k, v in extra.get("serving", {}).items() if k != "maxInputTokens"}
    spec = _spec(adep_spec, "vllm", {**extra, "serving": serving})
    seen = check_args(plan(spec, config).args, VLLM_OPTIONS)
    assert "--enable-lora" in seen and seen["--port"] == "8000"


@pytest.mark.parametrize("extra", SPECS)
def test_every_lorax_argument_is_in_the_pinned_cli(
    adep_spec: Any, config: OperatorConfig, extra: dict[str, Any]
) -> None:
    serving = {
        k: v
        for k, v in extra.get("serving", {}).items()
        if k in {"maxInputTokens", "maxTotalTokens", "maxConcurrentRequests", "maxLoadedAdapters"}
    }
    spec = _spec(adep_spec, "lorax", {**extra, "serving": serving})
    seen = check_args(plan(spec, config).args, LORAX_OPTIONS)
    assert seen["--port"] == "80" and seen["--model-id"] == "mistralai/Mistral-7B-v0.1"


def test_the_checker_rejects_what_the_pinned_cli_rejects() -> None:
    with pytest.raises(ValueError, match="is not one of"):
        check_args(["--max-lora-rank", "24"], VLLM_OPTIONS)
    with pytest.raises(ValueError, match="not an option"):
        check_args(["--max-input-tokens", "24"], LORAX_OPTIONS)  # TGI's newer name
    with pytest.raises(ValueError, match="not an option"):
        check_args(["--ignore-eos"], VLLM_OPTIONS)
    with pytest.raises(ValueError, match="needs a value"):
        check_args(["--model", "--port", "1"], VLLM_OPTIONS)
    with pytest.raises(ValueError, match="given twice"):
        check_args(["--port", "1", "--port", "2"], LORAX_OPTIONS)
    with pytest.raises(ValueError, match="below"):
        check_args(["--max-loras", "0"], VLLM_OPTIONS)


# ---------------------------------------------------------------- the defects


def test_vllm_max_lora_rank_outside_its_set_is_refused_naming_the_field(
    adep_spec: Any, config: OperatorConfig
) -> None:
    assert VLLM_MAX_LORA_RANKS == (1, 8, 16, 32, 64, 128, 256, 320, 512)
    spec = _spec(adep_spec, "vllm", {"serving": {"maxLoraRank": 24}})
    assert runtime_problems(spec) == [
        (
            "spec.serving.maxLoraRank",
            "vLLM accepts only 1, 8, 16, 32, 64, 128, 256, 320, 512 (got 24)",
        )
    ]
    with pytest.raises(RuntimeSpecError, match=r"spec\.serving\.maxLoraRank: vLLM accepts only"):
        plan(spec, config)
    # The builtin runtime takes any rank.
    assert runtime_problems(_spec(adep_spec, "builtin", {"serving": {"maxLoraRank": 24}})) == []


def test_vllm_max_loras_is_never_left_to_its_default_of_one(
    adep_spec: Any, config: OperatorConfig
) -> None:
    seen = check_args(plan(_spec(adep_spec, "vllm", {}), config).args, VLLM_OPTIONS)
    assert seen["--max-loras"] is not None
    assert int(seen["--max-loras"]) > VLLM_DEFAULT_MAX_LORAS
    assert int(seen["--max-cpu-loras"] or 0) >= int(seen["--max-loras"])


def test_max_lora_rank_defaults_from_the_adapters_own_ranks(
    adep_spec: Any, config: OperatorConfig
) -> None:
    spec = _spec(
        adep_spec,
        "vllm",
        {"adapters": [{"name": "big", "fromFineTuneJob": "big"}, {"name": "s", "uri": "hf://o/s"}]},
    )
    seen = check_args(plan(spec, config, {"big": 48}).args, VLLM_OPTIONS)
    assert seen["--max-lora-rank"] == "64"  # the smallest vLLM rank that covers 48
    assert check_args(plan(spec, config).args, VLLM_OPTIONS)["--max-lora-rank"] == "16"
    assert effective_max_lora_rank(spec, {"big": 600}) == 512
    assert runtime_problems(spec, {"big": 600}) == [
        (
            "spec.adapters[0]",
            "adapter rank 600 exceeds vLLM's max LoRA rank 512 (raise spec.runtime or use "
            "runtime: builtin)",
        )
    ]
    # An explicit value wins, and an adapter above it is refused with the field named.
    adapters = [{"name": "big", "fromFineTuneJob": "big"}]
    pinned = _spec(adep_spec, "vllm", {"adapters": adapters, "serving": {"maxLoraRank": 32}})
    assert runtime_problems(pinned, {"big": 48}) == [
        (
            "spec.adapters[0]",
            "adapter rank 48 exceeds vLLM's max LoRA rank 32 (raise spec.serving.maxLoraRank "
            "or use runtime: builtin)",
        )
    ]
    builtin = _spec(adep_spec, "builtin", {"adapters": adapters, "serving": {}})
    assert "--max-lora-rank" not in plan(builtin, config, {"big": 48}).args
    assert plan(builtin, config, {"big": 128}).args[-2:] == ["--max-lora-rank", "128"]


@pytest.mark.parametrize(
    ("serving", "field"),
    [
        ({"maxInputTokens": 8000}, "spec.serving.maxTotalTokens"),
        ({"maxInputTokens": 1000}, "spec.serving.maxTotalTokens"),
        ({"maxTotalTokens": 2048}, "spec.serving.maxInputTokens"),
    ],
)
def test_lorax_token_limits_its_launcher_rejects_are_refused(
    adep_spec: Any, config: OperatorConfig, serving: dict[str, int], field: str
) -> None:
    spec = _spec(adep_spec, "lorax", {"serving": serving})
    problems = runtime_problems(spec)
    assert [f for f, _ in problems] == [field]
    assert "launcher exits unless maxInputTokens < maxTotalTokens" in problems[0][1]
    with pytest.raises(RuntimeSpecError, match=field.replace(".", r"\.")):
        plan(spec, config)


def test_lorax_token_limits_it_accepts(adep_spec: Any) -> None:
    for serving in ({}, {"maxInputTokens": 2048, "maxTotalTokens": 4096}, {"maxTotalTokens": 8192}):
        assert runtime_problems(_spec(adep_spec, "lorax", {"serving": serving})) == []


def test_lorax_hub_cache_follows_the_cache_volume(
    adep_spec: Any, adep_owner: Owner, config: OperatorConfig
) -> None:
    """The image's HUGGINGFACE_HUB_CACHE=/data beats HF_HOME; the pod must override it."""
    spec = _spec(adep_spec, "lorax", {})
    dep = build_deployment(adep_owner, spec, plan(spec, config), [], config)
    server = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in server["env"]}
    cache = next(m["mountPath"] for m in server["volumeMounts"] if m["name"] == "cache")
    assert env["HUGGINGFACE_HUB_CACHE"].startswith(cache + "/")


@pytest.mark.parametrize("runtime", ["vllm", "lorax"])
def test_vllm_and_lorax_pods_get_the_agent_and_gate_readiness_on_it(
    adep_spec: Any, adep_owner: Owner, config: OperatorConfig, runtime: str
) -> None:
    spec = _spec(adep_spec, runtime, {"adapters": [{"name": "a", "uri": "pvc://adapters/a"}]})
    run = plan(spec, config)
    pod = build_deployment(adep_owner, spec, run, ["adapters"], config)["spec"]["template"]["spec"]
    server, agent = pod["containers"]
    assert agent["name"] == AGENT_CONTAINER and agent["image"] == config.relay_image
    assert agent["command"] == ["loraland"] and agent["args"][0] == "agent"
    assert agent["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "agent"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["stage"] == {"name": "stage", "emptyDir": {}}
    assert volumes["adapters"]["configMap"]["name"] == "serve-adapters"
    agent_mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    server_mounts = {m["name"]: m for m in server["volumeMounts"]}
    assert agent_mounts["stage"] == STAGE_DIR == server_mounts["stage"]["mountPath"]
    assert server_mounts["stage"]["readOnly"] is True
    # pvc:// adapters are handed over by path: both containers mount the claim alike.
    assert agent_mounts["pvc-adapters"] == server_mounts["pvc-adapters"]["mountPath"]
    env = {e["name"]: e["value"] for e in agent["env"]}
    assert env["LORALAND_CACHE"] == STAGE_DIR  # downloads land where the server reads
    # The template does not depend on the adapter list: no rollout when it changes.
    more = _spec(adep_spec, runtime, {"adapters": [{"name": "b", "uri": "pvc://adapters/b"}]})
    pod2 = build_deployment(adep_owner, more, plan(more, config), ["adapters"], config)
    assert (
        pod2["spec"]["template"]
        == build_deployment(adep_owner, spec, run, ["adapters"], config)["spec"]["template"]
    )


def test_deploy_to_refuses_what_the_target_runtime_cannot_serve(adep_spec: Any) -> None:
    target = _spec(adep_spec, "vllm", {"serving": {"maxLoraRank": 16}}).model_dump(by_alias=True)
    assert deploy_problem(target, "new", "s3://bucket/adapters/new", 8) is None
    why = deploy_problem(target, "new", "s3://bucket/adapters/new", 64)
    assert why is not None and why.startswith("spec.adapters[2]: adapter rank 64 exceeds")
    assert "builtin://x names a base model" in (deploy_problem(target, "n", "builtin://x", 8) or "")
    lorax = _spec(adep_spec, "lorax", {}).model_dump(by_alias=True)
    assert deploy_problem(lorax, "new", "s3://bucket/adapters/new", 64) is None


def test_required_false_reaches_the_agent_and_nothing_else_changes(
    adep_spec: Any, adep_owner: Owner
) -> None:
    spec = _spec(
        adep_spec,
        "vllm",
        {
            "adapters": [
                {"name": "opt", "uri": "hf://o/a", "required": False},
                {"name": "req", "uri": "hf://o/b"},
            ]
        },
    )
    cm = build_adapters_configmap(
        adep_owner, {"opt": "hf://o/a", "req": "hf://o/b"}, optional_adapters(spec)
    )
    assert yaml.safe_load(cm["data"]["adapters.yaml"]) == {
        "adapters": [
            {"name": "opt", "uri": "hf://o/a", "required": False},
            {"name": "req", "uri": "hf://o/b"},
        ]
    }
    # Unset stays unset on the wire (no server-side default written into stored specs).
    assert "required" not in spec.model_dump(by_alias=True, exclude_none=True)["adapters"][1]
