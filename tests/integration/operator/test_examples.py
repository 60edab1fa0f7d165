"""Every examples/*.yaml applies with kubectl and reaches its expected state.

kwok plays the kubelet: pods run nothing, so a FineTuneJob's training pod (and each of a
FineTuneStudy's runs) is ended by the test (annotation), and the claims the examples ask
for are bound to pre-made PersistentVolumes (the test cluster has no storage provisioner).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster import KubeCluster
from optools import REPO, Objects, OperatorProcess, pv_for_claim

pytestmark = pytest.mark.integration

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_there_are_examples() -> None:
    kinds = {d["kind"] for p in EXAMPLES for d in documents(p)}
    assert {"FineTuneJob", "AdapterDeployment", "FineTuneStudy"} <= kinds


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_reaches_its_expected_state(
    running_operator: OperatorProcess,
    objects: Objects,
    kube_cluster: KubeCluster,
    namespace: str,
    path: Path,
) -> None:
    docs = documents(path)
    for doc in docs:
        if doc["kind"] == "PersistentVolumeClaim":
            claim = doc["metadata"]["name"]
            pv = pv_for_claim(f"pv-{namespace}-{claim}", claim, namespace)
            kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(pv))
    kube_cluster.kubectl("apply", "-n", namespace, "-f", str(path))
    for doc in docs:
        name = doc["metadata"]["name"]
        if doc["kind"] == "FineTuneJob":
            objects.wait_phase("finetunejobs", namespace, name, "Running", timeout=150)
            objects.finish_training_pod(namespace, name)
            status = objects.wait_phase("finetunejobs", namespace, name, "Succeeded")
            assert status["jobName"]
        elif doc["kind"] == "FineTuneStudy":
            status = objects.finish_study(namespace, name)
            runs = len(doc["spec"]["baseModels"]) * len(doc["spec"]["tasks"])
            runs *= max(1, len(doc["spec"].get("variants") or []))
            assert status["progress"] == f"{runs}/{runs}"
            assert status["counts"]["succeeded"] == runs
            assert status["resultsConfigMap"] == f"{name}-results"
        elif doc["kind"] == "AdapterDeployment":
            status = objects.wait_phase("adapterdeployments", namespace, name, "Ready", timeout=150)
            assert status["readyReplicas"] == doc["spec"].get("replicas", 1)
            assert status["endpoint"].startswith("http://")
