"""AdapterDeployment -> Deployment, Service, ConfigMap; runtimes; adapter resolution."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from loraland.controller.config import LORAX_IMAGE, VLLM_IMAGE, OperatorConfig
from loraland.controller.podspec import Owner
from loraland.controller.runtimes import RuntimeSpecError, plan
from loraland.controller.serving import (
    build_adapters_configmap,
    build_deployment,
    build_service,
    endpoint,
    resolve_adapters,
    served_claims,
)


def deployment_for(owner: Owner, spec, config: OperatorConfig) -> dict:  # type: ignore[no-untyped-def]
    ready = resolve_adapters(spec, {}).ready
    return build_deployment(owner, spec, plan(spec, config), served_claims(spec, ready), config)


def test_builtin_deployment(adep_spec: Any, adep_owner: Owner, config: OperatorConfig) -> None:
    spec = adep_spec()
    dep = deployment_for(adep_owner, spec, config)
    assert dep["metadata"]["name"] == "serve"
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "loraland-server",
        "app.kubernetes.io/instance": "serve",
        "loraland.dev/adapterdeployment": "serve",
    }
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "reg/server:1"
    assert c["command"] == ["loraland"]
    assert c["args"] == [
        "serve",
        "--base-model",
        "builtin://smollm2-135m-instruct",
        "--adapters-file",
        "/etc/loraland/adapters/adapters.yaml",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
        "--grpc-port",
        "9090",
        "--max-batch-size",
        "16",
        "--max-loaded-adapters",
        "4",
    ]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}
    # Keeps serving while its endpoint leaves kube-proxy's rules.
    assert c["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["adapters"] == {"name": "adapters", "configMap": {"name": "serve-adapters"}}
    assert volumes["pvc-adapters"]["persistentVolumeClaim"]["claimName"] == "adapters"
    # The adapters the trainer wrote (group 10001 through its fsGroup) stay readable.
    assert dep["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 10001


def test_adapter_list_changes_leave_the_pod_template_alone(
    adep_spec: Any, adep_owner: Owner, config: OperatorConfig
) -> None:
    before = deployment_for(adep_owner, adep_spec(), config)
    more = adep_spec(
        adapters=[
            {"name": "sentiment", "uri": "pvc://adapters/sentiment"},
            {"name": "math", "uri": "pvc://adapters/math"},
        ],
        replicas=5,
    )
    after = deployment_for(adep_owner, more, config)
    assert after["spec"]["template"] == before["spec"]["template"]


def test_adapters_configmap_lists_resolved_adapters(adep_spec: Any, adep_owner: Owner) -> None:
    spec = adep_spec()
    resolved = resolve_adapters(
        spec, {"intents": {"phase": "Succeeded", "adapter": {"uri": "pvc://adapters/intents"}}}
    )
    assert dict(resolved.ready) == {
        "sentiment": "pvc://adapters/sentiment",
        "intents": "pvc://adapters/intents",
    }
    cm = build_adapters_configmap(adep_owner, resolved.ready)
    assert yaml.safe_load(cm["data"]["adapters.yaml"]) == {
        "adapters": [
            {"name": "intents", "uri": "pvc://adapters/intents"},
            {"name": "sentiment", "uri": "pvc://adapters/sentiment"},
        ]
    }


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, "FineTuneJob intents not found"),
        ({"phase": "Running"}, "waiting for FineTuneJob intents (Running)"),
        ({"phase": "Failed", "message": "boom"}, "FineTuneJob intents failed: boom"),
    ],
)
def test_unfinished_jobs_leave_adapters_waiting(
    adep_spec: Any, status: dict | None, expected: str
) -> None:  # type: ignore[type-arg]
    resolved = resolve_adapters(adep_spec(), {"intents": status})
    assert resolved.waiting == {"intents": expected}


def test_service_and_endpoint(adep_spec: Any, adep_owner: Owner, config: OperatorConfig) -> None:
    spec = adep_spec(service={"type": "NodePort", "port": 8000})
    svc = build_service(adep_owner, spec, plan(spec, config))
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["ports"][0] == {
        "name": "http",
        "port": 8000,
        "targetPort": "http",
        "protocol": "TCP",
    }
    assert endpoint(adep_owner, spec) == "http://serve.team-a.svc:8000"


def test_vllm_runtime(adep_spec: Any, config: OperatorConfig) -> None:
    spec = adep_spec(
        runtime="vllm",
        baseModel={"uri": "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"},
        serving={"maxLoadedAdapters": 8, "maxLoraRank": 16, "maxTotalTokens": 4096},
        adapters=[{"name": "a", "uri": "pvc://adapters/a"}],
    )
    run = plan(spec, config)
    assert run.image == VLLM_IMAGE == "vllm/vllm-openai:v0.33.0"
    assert run.port == 8000
    assert run.env == {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
    assert run.admin == "agent" and run.admin_port == 8090
    assert run.args == [
        "--model",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "--port",
        "8000",
        "--enable-lora",
        "--revision",
        "main",
        "--max-loras",
        "8",
        "--max-cpu-loras",
        "64",
        "--max-lora-rank",
        "16",
        "--max-model-len",
        "4096",
    ]
    assert run.agent is not None and run.agent.args[:3] == ["agent", "--runtime", "vllm"]
    assert run.agent.args[-2:] == ["--max-lora-rank", "16"]


def test_lorax_runtime(adep_spec: Any, config: OperatorConfig) -> None:
    spec = adep_spec(runtime="lorax", baseModel={"uri": "pvc://models/mistral"}, adapters=[])
    run = plan(spec, config)
    assert run.image == LORAX_IMAGE == "ghcr.io/predibase/lorax:0.12.1"
    assert run.args == [
        "--model-id",
        "/mnt/pvc/models/mistral",
        "--port",
        "80",
        "--max-active-adapters",
        "4",
    ]
    assert run.port == 80 and run.command is None and run.admin == "agent"
    assert run.agent is not None and "lorax" in run.agent.args


@pytest.mark.parametrize("runtime", ["lorax", "vllm"])
def test_third_party_runtimes_refuse_loraland_only_base_models(
    adep_spec: Any, runtime: str, config: OperatorConfig
) -> None:
    with pytest.raises(RuntimeSpecError, match=r"spec\.baseModel\.uri: runtime .* builtin://"):
        plan(adep_spec(runtime=runtime), config)
    spec = adep_spec(runtime=runtime, baseModel={"uri": "s3://bucket/base"}, adapters=[])
    with pytest.raises(RuntimeSpecError, match=r"spec\.baseModel\.uri: runtime .* s3://"):
        plan(spec, config)


@pytest.mark.parametrize("runtime", ["lorax", "vllm"])
def test_third_party_runtimes_take_every_adapter_uri_through_the_agent(
    adep_spec: Any, runtime: str, config: OperatorConfig
) -> None:
    """s3:// adapters used to be refused (and fromFineTuneJob ones made refresh raise):
    the agent stages them, so they are served like the others."""
    spec = adep_spec(
        runtime=runtime,
        baseModel={"uri": "hf://org/model"},
        adapters=[
            {"name": "s", "uri": "s3://bucket/a"},
            {"name": "h", "uri": "hf://org/adapter@v2"},
            {"name": "p", "uri": "pvc://adapters/a"},
            {"name": "l", "uri": "/opt/adapters/a"},
        ],
    )
    plan(spec, config)
    bad = adep_spec(
        runtime=runtime,
        baseModel={"uri": "hf://org/model"},
        adapters=[{"name": "ok", "uri": "hf://o/a"}, {"name": "b", "uri": "builtin://x"}],
    )
    with pytest.raises(RuntimeSpecError, match=r"spec\.adapters\[1\]\.uri: builtin://x names"):
        plan(bad, config)
