"""vLLM and LoRAX AdapterDeployments on the real control plane.

Pods render with arguments that the pinned releases' CLIs accept (the tables in
loraland.controller.upstream), with the adapter agent beside the server gating readiness;
adapters a FineTuneJob produced on S3 reach vLLM through deployTo and fromFineTuneJob
(they used to turn the AdapterDeployment Failed while the job said Deployed=True, and to
make the status refresh raise); an adapter the target cannot serve is not added, and the
job's Deployed condition says why.
"""

from __future__ import annotations

from typing import Any

import pytest
from loraland.controller.upstream import LORAX_OPTIONS, VLLM_OPTIONS, check_args
from optools import Objects, OperatorProcess, adep_manifest, ftj_manifest, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def _pod_spec(objects: Objects, namespace: str, name: str) -> Any:
    until(
        lambda: (
            objects.apps.list_namespaced_deployment(
                namespace, field_selector=f"metadata.name={name}"
            ).items
        ),
        f"Deployment {name}",
    )
    return objects.apps.read_namespaced_deployment(name, namespace).spec.template.spec


def _succeed(objects: Objects, namespace: str, job: str, uri: str) -> None:
    """Play the trainer: the relay posts the adapter, then the pod exits 0."""
    objects.wait_phase("finetunejobs", namespace, job, "Running")
    objects.custom.patch_namespaced_custom_object_status(
        "loraland.dev",
        "v1alpha1",
        namespace,
        "finetunejobs",
        job,
        {"status": {"adapter": {"name": job, "uri": uri, "sha256": "0" * 64, "sizeBytes": 1}}},
    )
    objects.finish_training_pod(namespace, job)
    objects.wait_phase("finetunejobs", namespace, job, "Succeeded")


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = {c["type"]: c for c in status.get("conditions", [])}.get(kind, {})
    return found


def test_vllm_and_lorax_pods_pass_the_pinned_cli_and_carry_the_agent(
    running_operator: OperatorProcess, objects: Objects, namespace: str
) -> None:
    objects.apply(namespace, ftj_manifest("ranked", lora={"rank": 48, "alpha": 96}))
    objects.apply(
        namespace,
        adep_manifest(
            "vl",
            runtime="vllm",
            resources={"gpus": 1},  # vLLM and LoRAX serve on GPUs only (admission refuses 0)
            baseModel={"uri": "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"},
            adapters=[
                {"name": "s3a", "uri": "s3://loraland-test/adapters/a"},
                {"name": "hub", "uri": "hf://acme/sql@v2"},
                {"name": "ranked", "fromFineTuneJob": "ranked"},
            ],
        ),
    )
    objects.apply(
        namespace,
        adep_manifest(
            "lx",
            runtime="lorax",
            resources={"gpus": 1},
            baseModel={"uri": "hf://mistralai/Mistral-7B-v0.1"},
            adapters=[{"name": "s3a", "uri": "s3://loraland-test/adapters/a"}],
            serving={"maxInputTokens": 2048, "maxTotalTokens": 4096, "maxLoadedAdapters": 8},
        ),
    )
    for name, table, model_flag in (
        ("vl", VLLM_OPTIONS, "--model"),
        ("lx", LORAX_OPTIONS, "--model-id"),
    ):
        pod = _pod_spec(objects, namespace, name)
        server, agent = pod.containers
        seen = check_args(list(server.args), table)
        assert seen[model_flag] in (
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "mistralai/Mistral-7B-v0.1",
        )
        assert agent.name == "adapter-agent" and agent.args[0] == "agent"
        assert agent.readiness_probe.http_get.path == "/ready"
        assert {v.name for v in pod.volumes} >= {"stage", "adapters", "cache"}
    vllm_args = check_args(
        list(_pod_spec(objects, namespace, "vl").containers[0].args), VLLM_OPTIONS
    )
    assert vllm_args["--max-lora-rank"] == "64"  # from the job's rank 48
    assert int(vllm_args["--max-loras"] or 0) > 1
    lorax_env = {e.name: e.value for e in _pod_spec(objects, namespace, "lx").containers[0].env}
    assert lorax_env["HUGGINGFACE_HUB_CACHE"].startswith("/var/cache/loraland/")
    # The status is written (fromFineTuneJob included) and names every adapter.
    status = until(
        lambda: (s := objects.status("adapterdeployments", namespace, "vl")).get("adapters") and s,
        "vl status adapters",
    )
    assert status["phase"] != "Failed"
    assert {a["name"] for a in status["adapters"]} == {"s3a", "hub", "ranked"}


def test_deploy_to_and_from_finetunejob_reach_vllm_or_say_why_not(
    running_operator: OperatorProcess, objects: Objects, namespace: str
) -> None:
    objects.apply(
        namespace,
        adep_manifest(
            "vllm16",
            runtime="vllm",
            resources={"gpus": 1},  # vLLM and LoRAX serve on GPUs only (admission refuses 0)
            baseModel={"uri": "hf://HuggingFaceTB/SmolLM2-135M-Instruct"},
            serving={"maxLoraRank": 16},
        ),
    )
    objects.apply(
        namespace,
        adep_manifest(
            "follower",
            runtime="vllm",
            resources={"gpus": 1},  # vLLM and LoRAX serve on GPUs only (admission refuses 0)
            baseModel={"uri": "hf://HuggingFaceTB/SmolLM2-135M-Instruct"},
            adapters=[{"name": "small", "fromFineTuneJob": "small"}],
        ),
    )
    objects.apply(
        namespace,
        ftj_manifest("small", lora={"rank": 8}, deployTo={"adapterDeployment": "vllm16"}),
    )
    objects.apply(
        namespace,
        ftj_manifest("big", lora={"rank": 64}, deployTo={"adapterDeployment": "vllm16"}),
    )
    _succeed(objects, namespace, "small", "s3://loraland-test/small")
    _succeed(objects, namespace, "big", "s3://loraland-test/big")

    small = until(
        lambda: (
            (s := objects.status("finetunejobs", namespace, "small")).get("deployedTo") == "vllm16"
            and s
        ),
        "small deployed",
    )
    assert _condition(small, "Deployed")["status"] == "True"
    big = until(
        lambda: _condition(objects.status("finetunejobs", namespace, "big"), "Deployed"),
        "big's Deployed condition",
    )
    assert big["status"] == "False" and big["reason"] == "AdapterUnservable"
    assert "rank 64 exceeds vLLM's max LoRA rank 16" in big["message"]
    adep = objects.get("adapterdeployments", namespace, "vllm16")
    assert adep is not None
    assert adep["spec"]["adapters"] == [{"name": "small", "uri": "s3://loraland-test/small"}]
    assert "big" not in str(adep["spec"])
    until(
        lambda: (
            "s3://loraland-test/small"
            in objects.core.read_namespaced_config_map("vllm16-adapters", namespace).data[
                "adapters.yaml"
            ]
        ),
        "the agent's list to carry the s3 adapter",
    )
    status = until(
        lambda: (
            (s := objects.status("adapterdeployments", namespace, "vllm16")).get("adapters") and s
        ),
        "vllm16 adapter states",
    )
    assert status["phase"] != "Failed"
    # fromFineTuneJob of the same S3 adapter: the refresh writes its state (it used to raise).
    follower = until(
        lambda: [
            a
            for a in objects.status("adapterdeployments", namespace, "follower").get("adapters", [])
            if a.get("uri") == "s3://loraland-test/small"
        ],
        "follower to resolve the job's adapter",
    )
    assert follower[0]["state"] in ("Pending", "Loaded")
