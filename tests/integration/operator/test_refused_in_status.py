"""Without the webhook, the operator refuses the same invalid set in status.

The session operator runs with no webhook. Every case of invalid_cases.py is stored
(it passes the schema and CEL), and the operator marks it Failed with a SpecValid=False
condition naming the field, in exactly the message the webhook would have answered,
before it creates any child. ``kubectl get`` shows the phase and that message.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cluster import KubeCluster
from invalid_cases import CASES, named, plural
from loraland.controller.admission import check, kinds
from loraland.controller.config import OperatorConfig
from optools import Objects, OperatorProcess, until

pytestmark = pytest.mark.integration

#: Every label the operator puts on its children (names.py).
CHILD_LABELS = ("loraland.dev/finetunejob", "loraland.dev/adapterdeployment")


def children(objects: Objects, namespace: str) -> list[str]:
    found = []
    for label in CHILD_LABELS:
        for kind, lister in (
            ("Job", objects.batch.list_namespaced_job),
            ("Deployment", objects.apps.list_namespaced_deployment),
            ("Service", objects.core.list_namespaced_service),
            ("ConfigMap", objects.core.list_namespaced_config_map),
            ("ServiceAccount", objects.core.list_namespaced_service_account),
        ):
            found += [
                f"{kind}/{o.metadata.name}" for o in lister(namespace, label_selector=label).items
            ]
    return found


@pytest.mark.timeout(600)
def test_invalid_resources_are_refused_in_status_before_any_child_exists(
    running_operator: OperatorProcess,
    kube_cluster: KubeCluster,
    objects: Objects,
    namespace: str,
) -> None:
    validators = kinds(OperatorConfig())
    docs = {f"c{i}": named(case, f"c{i}") for i, case in enumerate(CASES)}
    listing = {"apiVersion": "v1", "kind": "List", "items": list(docs.values())}
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(listing))

    def refused(name: str, doc: dict[str, Any]) -> dict[str, Any] | None:
        status = objects.status(plural(doc), namespace, name)
        return status if status.get("phase") == "Failed" else None

    failures = []
    for (name, doc), (case_id, _, field) in zip(docs.items(), CASES, strict=True):
        status = until(
            lambda n=name, d=doc: refused(n, d), f"{case_id} refused in status", timeout=120
        )
        condition = {c["type"]: c for c in status["conditions"]}["SpecValid"]
        expected = check(validators[doc["kind"]], doc).message
        if not (
            condition["status"] == "False"
            and condition["reason"] == "InvalidSpec"
            and field in condition["message"]
            and condition["message"] == expected
            and status["message"] == f"invalid spec: {expected}"
        ):
            failures.append((case_id, field, condition, status.get("message")))
    assert not failures, failures
    assert children(objects, namespace) == []

    # kubectl get shows them plainly: the phase and the message naming the field.
    for resource, kind in (("ftj", "FineTuneJob"), ("adep", "AdapterDeployment")):
        table = kube_cluster.kubectl("get", resource, "-n", namespace).stdout
        assert "MESSAGE" in table.splitlines()[0], table
        for (name, doc), (_, _, field) in zip(docs.items(), CASES, strict=True):
            if doc["kind"] == kind:
                row = next(line for line in table.splitlines() if line.startswith(name + " "))
                assert "Failed" in row and "invalid spec: " in row and field in row, row
