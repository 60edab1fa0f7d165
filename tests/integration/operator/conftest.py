"""Fixtures for the operator's integration tests (see optools.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from cluster import KubeCluster  # noqa: E402
from optools import (  # noqa: E402
    OPERATOR_NS,
    REPO,
    Objects,
    OperatorProcess,
    install_operator_rbac,
    kubeconfig_for_token,
    service_account_token,
)


@pytest.fixture(scope="session")
def crds(kube_cluster: KubeCluster) -> None:
    kube_cluster.kubectl("apply", "-f", str(REPO / "crds"))
    kube_cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "-f", str(REPO / "crds")
    )


@pytest.fixture(scope="session")
def operator_kubeconfig(
    kube_cluster: KubeCluster, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Credentials holding exactly the operator's ClusterRole (loraland.controller.rbac)."""
    install_operator_rbac(kube_cluster)
    token = service_account_token(kube_cluster, "loraland-operator", OPERATOR_NS)
    path = tmp_path_factory.mktemp("operator") / "kubeconfig.yaml"
    return kubeconfig_for_token(kube_cluster, token, path, OPERATOR_NS)


@pytest.fixture(scope="session")
def operator(
    operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """One operator for the session, peered (so a second one in a test stands by)."""
    proc = OperatorProcess(
        operator_kubeconfig,
        tmp_path_factory.mktemp("operator-logs"),
        "--peering",
        "loraland-test",
        "--priority",
        "100",
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def running_operator(operator: OperatorProcess) -> OperatorProcess:
    """The session operator, (re)started if an earlier test stopped it."""
    if not operator.alive():
        operator.start()
    return operator


@pytest.fixture
def objects(kube_cluster: KubeCluster) -> Objects:
    return Objects(kube_cluster)
