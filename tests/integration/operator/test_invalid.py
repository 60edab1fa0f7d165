"""Bad resources are refused by the API server (CRD schema, CEL) or reported by the
operator in status; every message names the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cluster import KubeCluster
from optools import Objects, OperatorProcess, adep_manifest, ftj_manifest, until

pytestmark = pytest.mark.integration


def with_spec(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``doc`` with ``spec.<path>`` set (``None`` deletes it)."""
    out = json.loads(json.dumps(doc))
    node = out["spec"]
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return out


FTJ = ftj_manifest("bad")
ADEP = adep_manifest("bad")

REFUSED_BY_API_SERVER = [
    ("rank-zero", with_spec(FTJ, "lora.rank", 0), "spec.lora.rank"),
    ("quantization-enum", with_spec(FTJ, "lora.quantization", "2bit"), "spec.lora.quantization"),
    ("no-dataset-source", with_spec(FTJ, "dataset", {"format": "jsonl"}), "spec.dataset"),
    ("steps-and-epochs", with_spec(FTJ, "training", {"maxSteps": 5, "epochs": 1}), "spec.training"),
    ("missing-output", with_spec(FTJ, "output", None), "spec.output"),
    ("negative-gpus", with_spec(FTJ, "resources.gpus", -1), "spec.resources.gpus"),
    (
        "adapter-name-pattern",
        with_spec(FTJ, "output.adapterName", "Bad_Name"),
        "spec.output.adapterName",
    ),
    ("unknown-field", with_spec(FTJ, "lora.rnak", 8), "spec.lora.rnak"),
    (
        "learning-rate-type",
        with_spec(FTJ, "training.learningRate", "fast"),
        "spec.training.learningRate",
    ),
    (
        "duplicate-adapters",
        with_spec(
            ADEP, "adapters", [{"name": "a", "uri": "s3://b/a"}, {"name": "a", "uri": "s3://b/c"}]
        ),
        "spec.adapters",
    ),
    (
        "adapter-two-sources",
        with_spec(ADEP, "adapters", [{"name": "a", "uri": "s3://b/a", "fromFineTuneJob": "x"}]),
        "spec.adapters[0]",
    ),
    ("negative-replicas", with_spec(ADEP, "replicas", -1), "spec.replicas"),
    ("runtime-enum", with_spec(ADEP, "runtime", "tgi"), "spec.runtime"),
    (
        "input-over-total",
        with_spec(ADEP, "serving", {"maxInputTokens": 4096, "maxTotalTokens": 1024}),
        "spec.serving",
    ),
    ("service-port", with_spec(ADEP, "service.port", 70000), "spec.service.port"),
]


@pytest.mark.parametrize(
    ("case", "doc", "field"), REFUSED_BY_API_SERVER, ids=[c[0] for c in REFUSED_BY_API_SERVER]
)
def test_api_server_refuses_with_the_field_named(
    crds: None,
    kube_cluster: KubeCluster,
    namespace: str,
    case: str,
    doc: dict[str, Any],
    field: str,
) -> None:
    result = kube_cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps(doc), check=False
    )
    assert result.returncode != 0, f"{case} was accepted"
    assert field in result.stderr, result.stderr


REPORTED_BY_OPERATOR = [
    ("ftj", "output-on-hub", with_spec(FTJ, "output.uri", "hf://org/adapter"), "spec.output.uri"),
    (
        "ftj",
        "unknown-scheme",
        with_spec(FTJ, "baseModel.uri", "ftp://host/model"),
        "spec.baseModel.uri",
    ),
    ("ftj", "bad-claim", with_spec(FTJ, "dataset.uri", "pvc://Not_A_Claim/x"), "spec.dataset.uri"),
    ("adep", "vllm-builtin", with_spec(ADEP, "runtime", "vllm"), "spec.baseModel.uri"),
    (
        "adep",
        "lorax-builtin-adapter",
        adep_manifest(
            "bad",
            runtime="lorax",
            baseModel={"uri": "hf://org/model"},
            adapters=[{"name": "a", "uri": "builtin://smollm2-135m-instruct"}],
        ),
        "spec.adapters[0].uri",
    ),
    (
        "adep",
        "vllm-rank-outside-its-set",
        adep_manifest(
            "bad", runtime="vllm", baseModel={"uri": "hf://org/model"}, serving={"maxLoraRank": 24}
        ),
        "spec.serving.maxLoraRank",
    ),
    (
        "adep",
        "lorax-input-limit-alone",
        adep_manifest(
            "bad",
            runtime="lorax",
            baseModel={"uri": "hf://org/model"},
            serving={"maxInputTokens": 8000},
        ),
        "spec.serving.maxTotalTokens",
    ),
]


@pytest.mark.parametrize(
    ("kind", "case", "doc", "field"), REPORTED_BY_OPERATOR, ids=[c[1] for c in REPORTED_BY_OPERATOR]
)
def test_operator_reports_in_status_with_the_field_named(
    running_operator: OperatorProcess,
    objects: Objects,
    namespace: str,
    kind: str,
    case: str,
    doc: dict[str, Any],
    field: str,
) -> None:
    plural = "finetunejobs" if kind == "ftj" else "adapterdeployments"
    objects.apply(namespace, doc)
    status = objects.wait_phase(plural, namespace, "bad", "Failed")
    assert field in status["message"], status["message"]
    spec_valid = {c["type"]: c for c in status["conditions"]}["SpecValid"]
    assert spec_valid["status"] == "False" and field in spec_valid["message"]
    # Kopf posts events after the status patch, so the event may trail the phase a little.
    until(
        lambda: any(
            e.startswith(("InvalidSpec:", "Failed:")) for e in objects.events(namespace, "bad")
        ),
        what="an InvalidSpec or Failed event",
        timeout=30,
    )
