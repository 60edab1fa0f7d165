"""First proof of the real node: a pod from the test registry runs, is Ready through its
probe, finds a Service by name through the cluster DNS, reaches it through kube-proxy,
logs for ``kubectl logs``, and writes to a provisioned PVC as a non-root user through
``fsGroup`` (and cannot without it)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from realnode import REAL_NODE_LABEL, REAL_NODE_TAINT, STORAGE_CLASS, TESTSERVER_IMAGE
from realtools import RealCluster, apply, exec_in, on_real_node, wait_for_service, wait_ready

pytestmark = pytest.mark.timeout(300)


def echo_pod(cluster: RealCluster, name: str, ns: str, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "server",
        "image": cluster.real_node.image(TESTSERVER_IMAGE),
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1},
        **spec.pop("container", {}),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": on_real_node({"containers": [container], **spec}),
    }


def test_the_node_is_real_ready_labelled_and_tainted(real_cluster: RealCluster) -> None:
    node = json.loads(
        real_cluster.kubectl("get", "node", real_cluster.real_node.name, "-o", "json").stdout
    )
    info = node["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://2.")
    assert info["kubeletVersion"].startswith("v1.")
    assert node["metadata"]["labels"][REAL_NODE_LABEL] == "true"
    assert REAL_NODE_TAINT in node["spec"]["taints"]
    # Honest capacity: the machine's own CPUs, not a fake node's 32.
    assert node["status"]["capacity"]["cpu"] == str(os.cpu_count())
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == real_cluster.real_node.network.node_ip
    # Registered by its own kubelet: kwok's annotation is absent, so kwok leaves it alone.
    assert "kwok.x-k8s.io/node" not in node["metadata"].get("annotations", {})


def test_pod_serves_through_dns_and_kube_proxy_and_logs(
    real_cluster: RealCluster, real_namespace: str
) -> None:
    ns = real_namespace
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    apply(
        real_cluster,
        echo_pod(real_cluster, "web", ns),
        service,
        echo_pod(real_cluster, "client", ns),
    )
    wait_ready(real_cluster, ns, "web")
    wait_ready(real_cluster, ns, "client")

    svc = json.loads(real_cluster.kubectl("get", "-n", ns, "svc/web", "-o", "json").stdout)
    cluster_ip = svc["spec"]["clusterIP"]
    pod = json.loads(real_cluster.kubectl("get", "-n", ns, "pod/web", "-o", "json").stdout)
    assert pod["spec"]["nodeName"] == real_cluster.real_node.name
    pod_ip = pod["status"]["podIP"]
    assert pod_ip and pod_ip != cluster_ip

    # DNS: the short name resolves through the pod's search path to the ClusterIP.
    assert exec_in(real_cluster, ns, "client", "/testserver", "resolve", "web").split() == [
        cluster_ip
    ]
    fqdn = f"web.{ns}.svc.cluster.local"
    assert exec_in(real_cluster, ns, "client", "/testserver", "resolve", fqdn).split() == [
        cluster_ip
    ]
    # kube-proxy: the ClusterIP on port 80 answers from the pod behind it, on 8080.
    body = wait_for_service(real_cluster, ns, "client", f"http://{fqdn}/")
    assert body.strip() == "hello from web"
    # A Service that does not exist does not resolve (the DNS is not answering everything).
    # Fully qualified: a bare name would end at the root zone, which this DNS does not serve
    # (no upstream here), and that answer is REFUSED rather than NXDOMAIN.
    missing = exec_in(
        real_cluster, ns, "client", "/testserver", "resolve", f"nope.{ns}.svc.cluster.local",
        check=False,
    )  # fmt: skip
    assert cluster_ip not in missing and "no such host" in missing

    logs = real_cluster.kubectl("logs", "-n", ns, "web").stdout
    assert "testserver web listening on :8080" in logs
    assert "request GET /" in logs


def pvc_pod(
    cluster: RealCluster, name: str, ns: str, claim: str, fs_group: int | None
) -> dict[str, Any]:
    security: dict[str, Any] = {"runAsUser": 10001, "runAsGroup": 10001, "runAsNonRoot": True}
    if fs_group is not None:
        security["fsGroup"] = fs_group
    return echo_pod(
        cluster,
        name,
        ns,
        securityContext=security,
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        container={"volumeMounts": [{"name": "data", "mountPath": "/data"}]},
    )


def test_pvc_is_provisioned_and_written_by_non_root_through_fs_group(
    real_cluster: RealCluster, real_namespace: str
) -> None:
    ns = real_namespace
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    apply(real_cluster, claim, pvc_pod(real_cluster, "writer", ns, "data", fs_group=10001))
    wait_ready(real_cluster, ns, "writer")
    pvc = json.loads(real_cluster.kubectl("get", "-n", ns, "pvc/data", "-o", "json").stdout)
    assert pvc["status"]["phase"] == "Bound"
    assert pvc["spec"]["storageClassName"] == STORAGE_CLASS  # the default class
    out = exec_in(real_cluster, ns, "writer", "/testserver", "write", "/data/out/ok.txt", "hi")
    assert out.split()[:2] == ["uid=10001", "gid=10001"]

    # The same claim on a fresh volume without fsGroup: root-owned 0755, as a new disk is,
    # so UID 10001 cannot write. This is what trainer pods without fsGroup ran into.
    claim2 = {**claim, "metadata": {"name": "data2", "namespace": ns}}
    apply(real_cluster, claim2, pvc_pod(real_cluster, "nogroup", ns, "data2", fs_group=None))
    wait_ready(real_cluster, ns, "nogroup")
    denied = exec_in(
        real_cluster, ns, "nogroup", "/testserver", "write", "/data/x", "hi", check=False
    )
    assert "permission denied" in denied
