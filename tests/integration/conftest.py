"""The session's Kubernetes cluster (see cluster.py): real API server, fake GPU nodes.

``kube_cluster`` starts one kwok cluster per test session and always deletes it, even when
tests fail or are interrupted. It yields a :class:`KubeCluster` with ``kubeconfig`` (a
path), ``api_client`` (a ``kubernetes.client.ApiClient``) and ``kubectl()`` / ``helm()``
helpers bound to that kubeconfig. Tests share the cluster, so each should work in its own
namespace (the ``namespace`` fixture makes and removes one).

The binaries come from ``$LORALAND_CLUSTER_BIN`` or the ``make cluster-bin`` cache; when
they are missing the fixture fails and says so instead of skipping.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import config

# pytest runs with --import-mode=importlib, which leaves sys.path alone. cluster.py is a
# plain module beside this file (`make cluster-up` runs it as a script), so put this
# folder on the path for it and for the test modules that import it.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from cluster import ClusterError, KubeCluster, KwokCluster, reap_stale_clusters, unique_name  # noqa: E402
from realnode import reap_stale_nodes  # noqa: E402


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[KubeCluster]:
    try:
        cluster = KwokCluster.from_env(unique_name())
    except ClusterError as exc:
        pytest.fail(str(exc), pytrace=False)
    # Real nodes first (tests/realnode): their clusters are reaped just after.
    reap_stale_nodes(cluster.workdir)
    reap_stale_clusters(cluster.workdir)
    # A SIGTERM (CI cancelling the job) unwinds like Ctrl-C, so the finally below runs.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        cluster.create(timeout=300)
        api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        try:
            yield KubeCluster(cluster=cluster, api_client=api_client)
        finally:
            api_client.close()
    finally:
        cluster.delete()


@pytest.fixture
def namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    """A fresh namespace, deleted (without waiting) after the test."""
    with kube_cluster.fresh_namespace("t") as name:
        yield name
