"""AdapterDeployment against the real control plane: children, scale, adapters, repair."""

from __future__ import annotations

import pytest
from cluster import KubeCluster
from optools import Objects, OperatorProcess, adep_manifest, until

pytestmark = pytest.mark.integration


def test_children_status_scale_and_adapter_changes_without_restart(
    running_operator: OperatorProcess, objects: Objects, namespace: str, kube_cluster: KubeCluster
) -> None:
    objects.apply(
        namespace,
        adep_manifest("web", replicas=2, adapters=[{"name": "a", "uri": "s3://bucket/adapters/a"}]),
    )
    status = objects.wait_phase("adapterdeployments", namespace, "web", "Ready")
    assert status["readyReplicas"] == 2 and status["replicas"] == 2
    assert status["endpoint"] == f"http://web.{namespace}.svc"
    (state,) = status["adapters"]
    # kwok pods run no server: the adapter waits, and the message says which pod is silent.
    assert state["state"] == "Pending" and "unreachable" in state["message"]
    dep = objects.apps.read_namespaced_deployment("web", namespace)
    (c,) = dep.spec.template.spec.containers
    assert (
        c.readiness_probe.http_get.path == "/health" and c.liveness_probe.http_get.path == "/health"
    )
    assert c.args[:2] == ["serve", "--base-model"]
    svc = objects.core.read_namespaced_service("web", namespace)
    assert {p.name for p in svc.spec.ports} == {"http", "grpc"}
    pods_before = {
        p.metadata.uid for p in objects.pods(namespace, "loraland.dev/adapterdeployment=web")
    }
    template_generation = dep.metadata.generation

    # Add an adapter: the ConfigMap changes, the pods do not.
    objects.apply(
        namespace,
        adep_manifest(
            "web",
            replicas=2,
            adapters=[
                {"name": "a", "uri": "s3://bucket/adapters/a"},
                {"name": "b", "uri": "s3://bucket/adapters/b"},
            ],
        ),
    )
    until(
        lambda: (
            "name: b"
            in objects.core.read_namespaced_config_map("web-adapters", namespace).data[
                "adapters.yaml"
            ]
        ),
        "the adapters ConfigMap to list b",
    )
    until(
        lambda: (
            {
                a["name"]
                for a in objects.status("adapterdeployments", namespace, "web").get("adapters", [])
            }
            == {"a", "b"}
        ),
        "status to list both adapters",
    )
    assert (
        objects.apps.read_namespaced_deployment("web", namespace).metadata.generation
        == template_generation
    )
    assert {
        p.metadata.uid for p in objects.pods(namespace, "loraland.dev/adapterdeployment=web")
    } == pods_before

    # kubectl scale goes through the scale subresource to spec.replicas, then the Deployment.
    kube_cluster.kubectl("scale", "adep", "web", "-n", namespace, "--replicas", "3")
    until(
        lambda: objects.status("adapterdeployments", namespace, "web").get("readyReplicas") == 3,
        "three ready replicas",
    )
    scale = objects.custom.get_namespaced_custom_object_scale(
        "loraland.dev", "v1alpha1", namespace, "adapterdeployments", "web"
    )
    assert scale["status"]["replicas"] == 3
    assert "loraland.dev/adapterdeployment=web" in scale["status"]["selector"]


def test_deleted_children_come_back(
    running_operator: OperatorProcess, objects: Objects, namespace: str
) -> None:
    objects.apply(namespace, adep_manifest("sturdy"))
    objects.wait_phase("adapterdeployments", namespace, "sturdy", "Ready")
    old = objects.apps.read_namespaced_deployment("sturdy", namespace).metadata.uid
    objects.apps.delete_namespaced_deployment("sturdy", namespace)
    objects.core.delete_namespaced_service("sturdy", namespace)
    objects.core.delete_namespaced_config_map("sturdy-adapters", namespace)
    until(
        lambda: any(
            d.metadata.uid != old for d in objects.apps.list_namespaced_deployment(namespace).items
        ),
        "a new Deployment",
    )
    until(lambda: objects.core.list_namespaced_service(namespace).items, "the Service again")
    until(
        lambda: any(
            c.metadata.name == "sturdy-adapters"
            for c in objects.core.list_namespaced_config_map(namespace).items
        ),
        "the ConfigMap again",
    )


def test_from_finetunejob_waits_for_the_job(
    running_operator: OperatorProcess, objects: Objects, namespace: str
) -> None:
    objects.apply(
        namespace, adep_manifest("waiter", adapters=[{"name": "x", "fromFineTuneJob": "nope"}])
    )
    until(
        lambda: [
            a
            for a in objects.status("adapterdeployments", namespace, "waiter").get("adapters", [])
            if a["message"] == "FineTuneJob nope not found"
        ],
        "the adapter to wait for its FineTuneJob",
    )
