"""The validating admission webhook on the real API server, the operator on this host.

A module-scoped operator serves the webhook at https://127.0.0.1:PORT with a self-signed
certificate; it creates the ValidatingWebhookConfiguration and writes its CA bundle
in. Every invalid case of invalid_cases.py is refused by ``kubectl apply`` with its field
path named; valid resources pass and are reconciled; with the operator stopped, nothing
gets in (failurePolicy Fail with persistent webhooks); a hypothesis test mutates valid
specs at random and checks each is refused naming a field, or accepted and reconciled
without an operator error.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster import KubeCluster
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from invalid_cases import CASES, STUDY_CASES, Case, named, plural
from loraland.controller.admission import kinds
from loraland.controller.config import OperatorConfig
from optools import (
    Objects,
    OperatorProcess,
    adep_manifest,
    ftj_manifest,
    until,
)

pytestmark = pytest.mark.integration

#: One webhook per kind the operator validates.
WEBHOOKS = len(kinds(OperatorConfig()))

FIELD = re.compile(r"(spec|metadata)(\.[A-Za-z]+|\[\d+\])+")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def webhooks(cluster: KubeCluster, name: str) -> list[dict[str, Any]]:
    result = cluster.kubectl(
        "get", "validatingwebhookconfiguration", name, "-o", "json", check=False
    )
    if result.returncode != 0:
        return []
    return list(json.loads(result.stdout).get("webhooks") or [])


class WebhookOperator:
    def __init__(self, proc: OperatorProcess, configuration: str) -> None:
        self.proc = proc
        self.configuration = configuration


@pytest.fixture(scope="module")
def webhook_operator(
    kube_cluster: KubeCluster, operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebhookOperator]:
    """An operator serving the webhook; it outranks the session operator's peer."""
    configuration = f"t-{secrets.token_hex(3)}.loraland.dev"
    proc = OperatorProcess(
        operator_kubeconfig,
        tmp_path_factory.mktemp("webhook-operator"),
        "--peering",
        "loraland-test",
        "--priority",
        "200",
        "--webhook-listen",
        f"127.0.0.1:{free_port()}",
        "--webhook-configuration",
        configuration,
    )
    proc.start()
    try:
        until(
            lambda: (
                len(webhooks(kube_cluster, configuration)) == WEBHOOKS
                and all(
                    w["clientConfig"].get("caBundle") for w in webhooks(kube_cluster, configuration)
                )
            ),
            "the operator's webhook configuration",
            timeout=60,
        )
        yield WebhookOperator(proc, configuration)
    finally:
        proc.stop()
        # Persistent webhooks outlive the operator by design: remove them, or every later
        # test creating a loraland resource would be refused.
        kube_cluster.kubectl(
            "delete", "validatingwebhookconfiguration", configuration, "--ignore-not-found"
        )


def apply(cluster: KubeCluster, namespace: str, doc: dict[str, Any]) -> Any:
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc), check=False)


def test_the_operator_writes_a_fail_closed_configuration(
    webhook_operator: WebhookOperator, kube_cluster: KubeCluster
) -> None:
    hooks = webhooks(kube_cluster, webhook_operator.configuration)
    assert sorted(w["name"] for w in hooks) == sorted(
        f"validate-{k}.{webhook_operator.configuration}"
        for k in ("finetunejob", "adapterdeployment", "finetunestudy")
    )
    for hook in hooks:
        assert hook["failurePolicy"] == "Fail"
        assert hook["clientConfig"]["url"].startswith("https://127.0.0.1:")
        assert sorted(hook["rules"][0]["operations"]) == ["CREATE", "UPDATE"]


@pytest.mark.parametrize("case", CASES + STUDY_CASES, ids=[c[0] for c in CASES + STUDY_CASES])
def test_invalid_resources_are_refused_at_admission_naming_the_field(
    webhook_operator: WebhookOperator,
    kube_cluster: KubeCluster,
    objects: Objects,
    namespace: str,
    case: Case,
) -> None:
    doc = named(case, "bad")
    result = apply(kube_cluster, namespace, doc)
    assert result.returncode != 0, f"{case[0]} was accepted"
    assert "denied the request" in result.stderr, result.stderr
    assert case[2] in result.stderr, result.stderr
    assert objects.get(plural(doc), namespace, "bad") is None


def test_every_bad_field_is_named_in_one_refusal(
    webhook_operator: WebhookOperator, kube_cluster: KubeCluster, namespace: str
) -> None:
    doc = ftj_manifest(
        "many",
        baseModel={"uri": "builtin://nope"},
        dataset={"task": "nope"},
        output={"uri": "hf://org/x"},
        image="Not An Image",
    )
    result = apply(kube_cluster, namespace, doc)
    assert result.returncode != 0
    for field in ("spec.baseModel.uri", "spec.dataset.task", "spec.output.uri", "spec.image"):
        assert f"{field}: " in result.stderr, result.stderr


def test_valid_resources_pass_and_metadata_updates_are_not_checked(
    webhook_operator: WebhookOperator,
    kube_cluster: KubeCluster,
    objects: Objects,
    namespace: str,
) -> None:
    ftj = ftj_manifest("good")
    adep = adep_manifest("good", adapters=[{"name": "a", "uri": "s3://loraland-test/a"}])
    for doc in (ftj, adep):
        result = apply(kube_cluster, namespace, doc)
        assert result.returncode == 0, result.stderr
    until(lambda: objects.jobs(namespace, "good"), "the Job of a FineTuneJob the webhook let in")
    # An update that leaves the spec alone is never refused (finalizers, labels).
    kube_cluster.kubectl("label", "-n", namespace, "ftj", "good", "team=a")
    # A spec change is checked like a create.
    bad = json.loads(json.dumps(adep))
    bad["spec"]["adapters"][0]["uri"] = "ftp://x/a"
    result = apply(kube_cluster, namespace, bad)
    assert result.returncode != 0 and "spec.adapters[0].uri" in result.stderr, result.stderr


def test_nothing_gets_in_while_the_operator_is_down(
    webhook_operator: WebhookOperator,
    kube_cluster: KubeCluster,
    objects: Objects,
    namespace: str,
) -> None:
    invalid = named(CASES[0], "while-down")
    valid = ftj_manifest("valid-while-down")
    webhook_operator.proc.stop()
    try:
        # The webhooks are persistent: they stay registered, the API server cannot call
        # them, and failurePolicy Fail refuses the request.
        for doc in (invalid, valid):
            result = apply(kube_cluster, namespace, doc)
            assert result.returncode != 0, f"{doc['metadata']['name']} got in"
            assert "failed calling webhook" in result.stderr, result.stderr
        assert objects.get("finetunejobs", namespace, "while-down") is None
    finally:
        webhook_operator.proc.start()
    # Back up: the valid one passes, the invalid one is refused naming its field.
    until(
        lambda: apply(kube_cluster, namespace, valid).returncode == 0,
        "the restarted operator's webhook",
        timeout=60,
        interval=1,
    )
    result = apply(kube_cluster, namespace, invalid)
    assert result.returncode != 0 and CASES[0][2] in result.stderr, result.stderr


# ------------------------------------------------------------------------ hypothesis

#: Leaf paths of the two valid specs that a mutation may change (or delete).
FTJ_PATHS = [
    "baseModel.uri",
    "baseModel.revision",
    "baseModel.secretRef",
    "dataset.task",
    "dataset.uri",
    "dataset.subset",
    "dataset.promptTemplate",
    "dataset.outputField",
    "dataset.evalFraction",
    "dataset.format",
    "lora.rank",
    "lora.alpha",
    "lora.dropout",
    "lora.targetModules",
    "lora.quantization",
    "training.maxSteps",
    "training.learningRate",
    "training.maxSeqLength",
    "training.batchSize",
    "evaluation.task",
    "evaluation.maxNewTokens",
    "output.uri",
    "output.adapterName",
    "resources.gpus",
    "resources.cpu",
    "resources.nodeSelector",
    "image",
    "backoffLimit",
]
ADEP_PATHS = [
    "baseModel.uri",
    "baseModel.revision",
    "runtime",
    "replicas",
    "adapters",
    "serving.maxInputTokens",
    "serving.maxTotalTokens",
    "serving.maxBatchSize",
    "serving.maxLoadedAdapters",
    "serving.maxLoraRank",
    "resources.gpus",
    "resources.memory",
    "resources.tolerations",
    "image",
    "service.port",
    "service.type",
]
URIS = [
    "builtin://smollm2-135m-instruct",
    "builtin://unknown",
    "hf://org/name",
    "hf://org/name@v1",
    "hf://noorg",
    "s3://loraland-test/x",
    "s3://B/x",
    "pvc://claim/x",
    "pvc://Bad/x",
    "pvc://claim/../x",
    "file:///models/x",
    "file://rel",
    "/abs/path",
    "ftp://host/x",
    "",
]
NAMES = ["sentiment", "gsm8k", "unknown", "q_proj", "vllm", "lorax", "builtin", "a b", "-x", "x.y"]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=100_000),
    st.floats(min_value=-10, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.sampled_from(URIS),
    st.sampled_from(NAMES),
    st.text(max_size=12),
    st.lists(st.sampled_from(NAMES), max_size=3),
    st.dictionaries(st.sampled_from(NAMES), st.sampled_from(NAMES), max_size=2),
    st.lists(
        st.fixed_dictionaries({"name": st.sampled_from(NAMES), "uri": st.sampled_from(URIS)}),
        max_size=2,
    ),
)

INTS = st.integers(min_value=-2, max_value=20_000)
FRACTIONS = st.floats(min_value=-0.1, max_value=1.1, allow_nan=False)
MODULES = st.lists(st.sampled_from(["q_proj", "v_proj", "k_proj", "c_attn", "x.y", ""]), max_size=3)
#: Values of the right type for a path, so most mutations get past the schema and test the
#: webhook and the reconciler; the rest come from VALUES (any type).
TYPED: dict[str, st.SearchStrategy[Any]] = {
    **dict.fromkeys(["baseModel.uri", "dataset.uri", "output.uri"], st.sampled_from(URIS)),
    **dict.fromkeys(["dataset.task", "evaluation.task", "runtime"], st.sampled_from(NAMES)),
    **dict.fromkeys(
        [
            "lora.rank",
            "lora.alpha",
            "training.maxSteps",
            "training.maxSeqLength",
            "training.batchSize",
            "evaluation.maxNewTokens",
            "resources.gpus",
            "backoffLimit",
            "replicas",
            "serving.maxInputTokens",
            "serving.maxTotalTokens",
            "serving.maxBatchSize",
            "serving.maxLoadedAdapters",
            "serving.maxLoraRank",
            "service.port",
        ],
        INTS,
    ),
    **dict.fromkeys(["dataset.evalFraction", "lora.dropout", "training.learningRate"], FRACTIONS),
    "dataset.promptTemplate": st.sampled_from(
        ["{text}", "Review: {text}\nSentiment:", "{nope}", "{", "}", "{{x}} {text}", "{text!r}"]
    ),
    "dataset.format": st.sampled_from(["auto", "jsonl", "csv", "parquet"]),
    "lora.targetModules": MODULES,
    "lora.quantization": st.sampled_from(["none", "4bit", "8bit"]),
    "resources.cpu": st.sampled_from(["1", "500m", "0.5", "0"]),
    "resources.memory": st.sampled_from(["1Gi", "512Mi", "2G"]),
    "resources.nodeSelector": st.dictionaries(
        st.sampled_from(["pool", "example.com/gpu", "a b", "-x"]),
        st.sampled_from(NAMES),
        max_size=2,
    ),
    "resources.tolerations": st.lists(
        st.fixed_dictionaries(
            {
                "key": st.sampled_from(["gpu", "bad key"]),
                "operator": st.sampled_from(["Exists", "Equal"]),
            },
            optional={
                "value": st.sampled_from(["a", ""]),
                "effect": st.sampled_from(["NoSchedule", "NoExecute"]),
            },
        ),
        max_size=2,
    ),
    "service.type": st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]),
}


def mutated(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(doc))
    node = out["spec"]
    *parents, leaf = path.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    if value is None:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return out


def operator_errors(log: str) -> list[str]:
    """Tracebacks in an operator log, except writes into namespaces that earlier tests are
    deleting (a 403 the API server gives while a namespace terminates; not about specs)."""
    blocks = log.split("Traceback (most recent call last)")[1:]
    return [b[:3000] for b in blocks if "is being terminated" not in b[:6000]]


def spec_valid(objects: Objects, plural_name: str, namespace: str, name: str) -> dict[str, Any]:
    status = objects.status(plural_name, namespace, name)
    return {c["type"]: c for c in status.get("conditions") or []}.get("SpecValid") or {}


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(["ftj", "adep"]),
    data=st.data(),
)
@pytest.mark.timeout(600)
def test_random_mutations_are_refused_naming_a_field_or_reconciled(
    webhook_operator: WebhookOperator,
    kube_cluster: KubeCluster,
    objects: Objects,
    namespace: str,
    kind: str,
    data: st.DataObject,
) -> None:
    name = f"m-{secrets.token_hex(4)}"
    if kind == "ftj":
        base, paths = ftj_manifest(name), FTJ_PATHS
    else:
        base = adep_manifest(name, adapters=[{"name": "a", "uri": "s3://loraland-test/a"}])
        paths = ADEP_PATHS
    path = data.draw(st.sampled_from(paths), label="path")
    typed = TYPED.get(path, VALUES)
    value = data.draw(st.one_of(typed, typed, typed, VALUES), label="value")
    doc = mutated(base, path, value)
    log_start = len(webhook_operator.proc.text())
    result = apply(kube_cluster, namespace, doc)
    if result.returncode != 0:
        # Refused by the schema, CEL or the webhook: never by a webhook that broke.
        assert "failed calling webhook" not in result.stderr, result.stderr
        assert FIELD.search(result.stderr), result.stderr
        event("webhook refused" if "denied the request" in result.stderr else "schema refused")
        return
    event("accepted and reconciled")
    plural_name = plural(doc)
    try:
        # Accepted: the operator reconciles it and finds the spec valid (what the webhook
        # let in, the reconciler accepts: they run the same validation).
        condition = until(
            lambda: spec_valid(objects, plural_name, namespace, name) or None,
            f"{name}'s SpecValid condition ({path}={value!r})",
            timeout=60,
        )
        assert condition["status"] == "True", (path, value, condition)
    finally:
        kube_cluster.kubectl(
            "delete", "-n", namespace, plural_name, name, "--wait=false", "--ignore-not-found"
        )
    errors = operator_errors(webhook_operator.proc.text()[log_start:])
    assert not errors, errors[0]
