"""Smoke tests of the test control plane itself: the real components doing their jobs.

Scheduling (kube-scheduler), Job and garbage-collection controllers
(kube-controller-manager), CRD schema validation (kube-apiserver), the fake kubelet
(kwok Stages) and the version stamps of the built binaries.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cluster import (
    DEFAULT_NODES,
    GPU_RESOURCE,
    GPU_TOLERATION,
    HACK_DIR,
    POOL_LABEL,
    RESULT_ANNOTATION,
    KubeCluster,
    wait_for,
)
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.integration

WAIT = {"timeout": 90.0, "interval": 0.5}
GPU_NODES = {n.name for n in DEFAULT_NODES if n.gpus}
CPU_NODES = {n.name for n in DEFAULT_NODES if not n.gpus}


def module_version(module: str) -> str:
    """The version hack/go.mod pins for ``module``."""
    match = re.search(rf"^\s*{re.escape(module)} (v\S+)", (HACK_DIR / "go.mod").read_text(), re.M)
    assert match, f"{module} not in hack/go.mod"
    return match.group(1)


def container(requests: dict[str, str] | None = None) -> client.V1Container:
    resources = (
        client.V1ResourceRequirements(requests=requests, limits=requests) if requests else None
    )
    return client.V1Container(
        name="main", image="registry.invalid/never-pulled:1", resources=resources
    )


def pods_of(core: client.CoreV1Api, namespace: str, selector: str) -> list[client.V1Pod]:
    return list(core.list_namespaced_pod(namespace, label_selector=selector).items)


def job_condition(batch: client.BatchV1Api, namespace: str, name: str, kind: str) -> bool:
    job = batch.read_namespaced_job_status(name, namespace)
    return any(c.type == kind and c.status == "True" for c in job.status.conditions or [])


def test_cluster_has_gpu_and_cpu_nodes(kube_cluster: KubeCluster) -> None:
    core = client.CoreV1Api(kube_cluster.api_client)
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert set(nodes) == GPU_NODES | CPU_NODES
    for name in GPU_NODES:
        assert nodes[name].status.allocatable[GPU_RESOURCE] == "8"
        assert [t.key for t in nodes[name].spec.taints] == [GPU_RESOURCE]
    for name in CPU_NODES:
        assert GPU_RESOURCE not in nodes[name].status.allocatable
        assert not nodes[name].spec.taints


def test_gpu_deployment_pod_is_scheduled_on_a_gpu_node_and_runs(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    apps = client.AppsV1Api(kube_cluster.api_client)
    core = client.CoreV1Api(kube_cluster.api_client)
    labels = {"app": "gpu-smoke"}
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="gpu-smoke"),
            spec=client.V1DeploymentSpec(
                replicas=1,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        # One GPU: earlier tests in the session may still hold most of them.
                        containers=[container({GPU_RESOURCE: "1"})],
                        tolerations=[client.V1Toleration(**GPU_TOLERATION)],
                    ),
                ),
            ),
        ),
    )

    def available() -> bool:
        status = apps.read_namespaced_deployment_status("gpu-smoke", namespace).status
        return (status.available_replicas or 0) == 1

    wait_for(available, what="deployment gpu-smoke available", **WAIT)
    (pod,) = pods_of(core, namespace, "app=gpu-smoke")
    assert pod.status.phase == "Running"
    assert pod.spec.node_name in GPU_NODES
    assert core.read_node(pod.spec.node_name).metadata.labels[POOL_LABEL] == "gpu"


def test_pod_without_gpu_toleration_lands_on_the_cpu_node(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    core = client.CoreV1Api(kube_cluster.api_client)
    core.create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="cpu-only"),
            spec=client.V1PodSpec(containers=[container()]),
        ),
    )
    wait_for(
        lambda: core.read_namespaced_pod("cpu-only", namespace).status.phase == "Running",
        what="pod cpu-only Running",
        **WAIT,
    )
    assert core.read_namespaced_pod("cpu-only", namespace).spec.node_name in CPU_NODES


def job_manifest(name: str, *, gpus: int) -> client.V1Job:
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"job": name}),
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[container({GPU_RESOURCE: str(gpus)})],
                    tolerations=[client.V1Toleration(**GPU_TOLERATION)],
                ),
            ),
        ),
    )


@pytest.mark.parametrize(("result", "condition"), [("Succeeded", "Complete"), ("Failed", "Failed")])
def test_job_finishes_when_the_test_says_so(
    kube_cluster: KubeCluster, namespace: str, result: str, condition: str
) -> None:
    core = client.CoreV1Api(kube_cluster.api_client)
    batch = client.BatchV1Api(kube_cluster.api_client)
    name = f"train-{result.lower()}"
    # One GPU: earlier tests in the session may still hold GPUs in namespaces being deleted.
    batch.create_namespaced_job(namespace, job_manifest(name, gpus=1))

    def running() -> bool:
        pods = pods_of(core, namespace, f"job={name}")
        return len(pods) == 1 and pods[0].status.phase == "Running"

    wait_for(running, what=f"job {name}'s pod Running", **WAIT)
    (pod,) = pods_of(core, namespace, f"job={name}")
    assert pod.spec.node_name in GPU_NODES
    # kwok keeps the pod running until told otherwise, so the Job is still active.
    assert not job_condition(batch, namespace, name, condition)

    core.patch_namespaced_pod(
        pod.metadata.name, namespace, {"metadata": {"annotations": {RESULT_ANNOTATION: result}}}
    )
    wait_for(
        lambda: job_condition(batch, namespace, name, condition),
        what=f"job {name} {condition}",
        **WAIT,
    )
    assert core.read_namespaced_pod(pod.metadata.name, namespace).status.phase == result


def test_job_with_annotated_template_completes_on_its_own(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    batch = client.BatchV1Api(kube_cluster.api_client)
    job = job_manifest("quick", gpus=1)
    job.spec.template.metadata.annotations = {RESULT_ANNOTATION: "Succeeded"}
    job.spec.completions = 2
    batch.create_namespaced_job(namespace, job)
    wait_for(
        lambda: job_condition(batch, namespace, "quick", "Complete"),
        what="job quick Complete",
        **WAIT,
    )
    assert batch.read_namespaced_job_status("quick", namespace).status.succeeded == 2


WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.smoke.loraland.dev"},
    "spec": {
        "group": "smoke.loraland.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["rank"],
                                "properties": {
                                    "rank": {"type": "integer", "minimum": 1, "maximum": 256}
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_crd_schema_is_enforced_by_the_api_server(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(WIDGET_CRD))
    kube_cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/widgets.smoke.loraland.dev"
    )
    custom = client.CustomObjectsApi(kube_cluster.api_client)

    def widget(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "smoke.loraland.dev/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": spec,
        }

    # The CRD is served a moment after Established; retry only while the route is a 404.
    def created() -> bool:
        try:
            custom.create_namespaced_custom_object(
                "smoke.loraland.dev", "v1", namespace, "widgets", widget("ok", {"rank": 8})
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    wait_for(created, what="widgets to be served", timeout=60, interval=0.5)

    for bad in ({"rank": 0}, {"rank": "eight"}, {}):
        with pytest.raises(ApiException) as info:
            custom.create_namespaced_custom_object(
                "smoke.loraland.dev", "v1", namespace, "widgets", widget("bad", bad)
            )
        assert info.value.status == 422, info.value.body
        assert "spec.rank" in info.value.body
    kube_cluster.kubectl("delete", "crd", "widgets.smoke.loraland.dev", "--wait=false")


def test_garbage_collector_deletes_owned_objects(kube_cluster: KubeCluster, namespace: str) -> None:
    core = client.CoreV1Api(kube_cluster.api_client)
    parent = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="parent"), data={"k": "v"})
    )
    owner = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="parent", uid=parent.metadata.uid
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="child", owner_references=[owner])),
    )
    core.delete_namespaced_config_map("parent", namespace, propagation_policy="Background")

    def child_gone() -> bool:
        try:
            core.read_namespaced_config_map("child", namespace)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    wait_for(child_gone, what="the garbage collector to delete the child", **WAIT)


def test_binaries_print_their_stamped_versions(kube_cluster: KubeCluster) -> None:
    helm = kube_cluster.helm("version", "--short").stdout.strip()
    assert helm.split("+")[0] == module_version("helm.sh/helm/v3"), helm

    kube = module_version("k8s.io/kubernetes")
    versions = json.loads(kube_cluster.kubectl("version", "-o", "json").stdout)
    assert versions["serverVersion"]["gitVersion"] == kube
    assert versions["clientVersion"]["gitVersion"] == kube
    assert versions["serverVersion"]["minor"] == kube.split(".")[1]
