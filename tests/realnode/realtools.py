"""Helpers for the real-node tests (importable by test modules; conftest is not)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from cluster import ClusterError, KubeCluster
from realnode import REAL_NODE_SELECTOR, REAL_NODE_TOLERATION, RealNode


@dataclasses.dataclass
class RealCluster(KubeCluster):
    """A :class:`KubeCluster` with a real node."""

    node: RealNode | None = None

    @property
    def real_node(self) -> RealNode:
        assert self.node is not None
        return self.node


def on_real_node(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """``pod_spec`` with the selector and toleration that put it on the real node."""
    spec = dict(pod_spec)
    spec["nodeSelector"] = {**spec.get("nodeSelector", {}), **REAL_NODE_SELECTOR}
    spec["tolerations"] = [*spec.get("tolerations", []), dict(REAL_NODE_TOLERATION)]
    return spec


def apply(cluster: KubeCluster, *objects: dict[str, Any]) -> None:
    """``kubectl apply`` of ``objects`` as one List."""
    doc = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(doc))


def wait_ready(cluster: RealCluster, ns: str, name: str, timeout: int = 180) -> None:
    """Wait for pod ``name`` to be Ready; on failure show `kubectl describe` and the logs."""
    result = cluster.kubectl(
        "wait",
        "-n",
        ns,
        f"pod/{name}",
        "--for=condition=Ready",
        f"--timeout={timeout}s",
        check=False,
        timeout=timeout + 30,
    )
    if result.returncode != 0:
        describe = cluster.kubectl("describe", "-n", ns, f"pod/{name}", check=False).stdout
        pytest.fail(
            f"pod {name} not Ready: {result.stderr}\n{describe}\n({cluster.real_node.log_hint()})"
        )


def exec_in(cluster: KubeCluster, ns: str, pod: str, *cmd: str, check: bool = True) -> str:
    """``kubectl exec`` in ``pod``: its stdout, or stdout and stderr when not checked."""
    result = cluster.kubectl("exec", "-n", ns, pod, "--", *cmd, check=check, timeout=60)
    return result.stdout if check else result.stdout + result.stderr


def wait_until(check: Callable[[], Any], what: str, timeout: float, cluster: RealCluster) -> Any:
    """Poll ``check`` every 2 s until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(2)
    pytest.fail(
        f"timed out after {timeout:.0f}s waiting for {what} ({cluster.real_node.log_hint()})"
    )


TESTSERVER_GET = ("/testserver", "get")
PYTHON_GET = (
    "python", "-c",
    "import sys,urllib.request as u;print(u.urlopen(sys.argv[1],timeout=30).read().decode())",
)  # fmt: skip


def wait_for_service(
    cluster: RealCluster, ns: str, client_pod: str, url: str, get: Sequence[str] = TESTSERVER_GET
) -> str:
    """GET ``url`` from ``client_pod`` (with the command ``get``) until it answers, and
    return the body.

    A Ready pod reaches a Service's endpoints, and then kube-proxy's rules, a moment later
    (its sync period); until then the ClusterIP refuses connections.
    """

    def answered() -> str | None:
        try:
            return exec_in(cluster, ns, client_pod, *get, url)
        except ClusterError:
            return None

    return str(wait_until(answered, f"{url} to answer from {client_pod}", 60, cluster))
