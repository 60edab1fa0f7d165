"""The session's cluster with a real node (tests/integration/realnode.py).

``real_cluster`` starts its own control plane (the API server advertises the node link's
address and serves the node's Service range), the kwok fake nodes, and one real node
where pods run. It is separate from ``kube_cluster`` so the kwok-only tests never pay for
the node. Everything is torn down at the end, also on failure or SIGTERM; a session that
was killed is reaped by the next one.

Real pods must tolerate ``REAL_NODE_TOLERATION`` and select ``REAL_NODE_SELECTOR``
(:func:`on_real_node` adds both to a pod spec).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import config

# Plain modules beside the tests (as in tests/integration, pytest's importlib mode leaves
# sys.path alone): cluster.py and realnode.py there, realtools.py here.
for _dir in (Path(__file__).resolve().parents[1] / "integration", Path(__file__).parent):
    if str(_dir) not in sys.path:
        sys.path.insert(0, str(_dir))

from cluster import ClusterError, KwokCluster, reap_stale_clusters, unique_name  # noqa: E402
from realnode import RealNode, apiserver_patches, reap_stale_nodes  # noqa: E402
from realtools import RealCluster  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The suite needs root, `make node-bin` and minutes of real work, so a bare
    `pytest tests` skips it (saying why) unless ``-m realnode`` selects it or
    LORALAND_REAL_NODE=1 asks for it (`make test` and `make test-realnode` do)."""
    wanted = "realnode" in (config.option.markexpr or "")
    wanted = wanted or os.environ.get("LORALAND_REAL_NODE") == "1"
    if wanted and os.geteuid() == 0:
        return
    reason = (
        "the real node needs root (network namespaces, cgroups, containerd)"
        if wanted
        else "real-node suite is opt-in: make test, make test-realnode or -m realnode"
    )
    skip = pytest.mark.skip(reason=reason)
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def real_cluster() -> Iterator[RealCluster]:
    try:
        cluster = KwokCluster.from_env(unique_name())
    except ClusterError as exc:
        pytest.fail(str(exc), pytrace=False)
    reap_stale_nodes(cluster.workdir)
    reap_stale_clusters(cluster.workdir)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    node: RealNode | None = None
    try:
        try:
            node = RealNode.create_network(cluster)
        except ClusterError as exc:
            pytest.fail(str(exc), pytrace=False)
        cluster.create(timeout=300, extra_options=apiserver_patches(node.network))
        node.start(timeout=300)
        api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        try:
            yield RealCluster(cluster=cluster, api_client=api_client, node=node)
        finally:
            api_client.close()
    finally:
        if node is not None:
            node.stop()
        cluster.delete()


@pytest.fixture
def real_namespace(real_cluster: RealCluster) -> Iterator[str]:
    """A fresh namespace on the real cluster, deleted (without waiting) after the test."""
    with real_cluster.fresh_namespace("r") as name:
        yield name
