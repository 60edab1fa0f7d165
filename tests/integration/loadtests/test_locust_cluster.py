"""Distributed Locust in the test cluster: ``loraland loadtest k8s`` output, applied.

kwok runs no containers, so there is no load here; what is checked is everything the
cluster decides: the objects are accepted by the real API server, the scheduler places the
master and every worker, the Deployments become ready, the master Service selects the
master pod (workers reach it by that name), and scaling the workers works.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from cluster import KubeCluster, wait_for
from kubernetes import client
from loraland.loadtest.k8s import MASTER_PORT, WEB_PORT
from loraland.loadtest.sweep import BUNDLED_LOCUSTFILE

WAIT = {"timeout": 90.0, "interval": 0.5}


def _render(namespace: str) -> str:
    """The manifests exactly as a user gets them: from the CLI."""
    command = [
        sys.executable, "-m", "loraland.cli", "loadtest", "k8s",
        "--name", "lt", "--namespace", namespace,
        # An AdapterDeployment's status.endpoint has this shape.
        "--host", f"http://my-adapters.{namespace}.svc",
        "--users", "12", "--workers", "3", "--run-time", "10m",
        "--adapters", "ad-{0..9}", "--adapter-dist", "zipf", "--max-new-tokens", "32",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return result.stdout


def _ready(apps: client.AppsV1Api, namespace: str, name: str, replicas: int) -> bool:
    status = apps.read_namespaced_deployment_status(name, namespace).status
    return (status.ready_replicas or 0) == replicas and (status.replicas or 0) == replicas


def test_master_and_workers_run_in_the_cluster(kube_cluster: KubeCluster, namespace: str) -> None:
    text = _render(namespace)
    applied = kube_cluster.kubectl("apply", "-f", "-", input=text).stdout
    for line in (
        "configmap/lt-locustfile created",
        "service/lt-master created",
        "deployment.apps/lt-master created",
        "deployment.apps/lt-worker created",
    ):
        assert line in applied

    apps = client.AppsV1Api(kube_cluster.api_client)
    core = client.CoreV1Api(kube_cluster.api_client)
    wait_for(lambda: _ready(apps, namespace, "lt-master", 1), **WAIT, what="the Locust master")
    wait_for(lambda: _ready(apps, namespace, "lt-worker", 3), **WAIT, what="3 Locust workers")

    cpu_nodes = {n.metadata.name for n in core.list_node().items if "gpu" not in n.metadata.name}
    pods = core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/name=locust").items
    assert len(pods) == 4
    for pod in pods:
        # Locust needs no GPU: the pods land on CPU nodes, not the tainted GPU pool.
        assert pod.spec.node_name in cpu_nodes
        env = {e.name: e.value for e in pod.spec.containers[0].env}
        assert env["LOCUST_LOCUSTFILE"] == "/etc/locust/locustfile.py"
        assert env["LORALAND_LOADTEST_ADAPTER_DIST"] == "zipf"
        assert env["LORALAND_LOADTEST_MAX_NEW_TOKENS"] == "32"
    workers = [p for p in pods if p.metadata.labels["app.kubernetes.io/component"] == "worker"]
    assert len(workers) == 3
    assert all("--master-host" in p.spec.containers[0].args for p in workers)
    master = next(p for p in pods if p.metadata.labels["app.kubernetes.io/component"] == "master")
    assert f"http://my-adapters.{namespace}.svc" in master.spec.containers[0].args

    # The Service the workers dial selects exactly the (ready) master pod.
    service = core.read_namespaced_service("lt-master", namespace)
    assert {p.port for p in service.spec.ports} == {MASTER_PORT, WEB_PORT}

    def master_endpoint() -> bool:
        slices = client.DiscoveryV1Api(kube_cluster.api_client).list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=lt-master"
        )
        addresses = [
            address
            for s in slices.items
            for e in s.endpoints or []
            if (e.conditions and e.conditions.ready)
            for address in e.addresses
        ]
        return addresses == [master.status.pod_ip]

    wait_for(master_endpoint, **WAIT, what="the master Service's endpoint")

    config = core.read_namespaced_config_map("lt-locustfile", namespace)
    assert config.data["locustfile.py"] == BUNDLED_LOCUSTFILE.read_text()

    # More load means more workers: the worker Deployment scales like any other.
    kube_cluster.kubectl("-n", namespace, "scale", "deployment/lt-worker", "--replicas=5")
    wait_for(lambda: _ready(apps, namespace, "lt-worker", 5), **WAIT, what="5 Locust workers")


@pytest.mark.parametrize("path", ["loadtests/k8s/locust.yaml"])
def test_checked_in_example_is_accepted(
    kube_cluster: KubeCluster, namespace: str, path: str
) -> None:
    """The example in the repository passes the API server's validation (server dry run)."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    text = (repo / path).read_text()
    kinds = [doc["kind"] for doc in yaml.safe_load_all(text)]
    result = kube_cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=text
    ).stdout
    assert result.count("(server dry run)") == len(kinds) == 4
