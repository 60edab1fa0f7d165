"""Several operator replicas do not fight: Kopf peering leaves one active at a time."""

from __future__ import annotations

from pathlib import Path

import pytest
from optools import Objects, OperatorProcess, ftj_manifest, until

pytestmark = pytest.mark.integration


def test_standby_replica_pauses_then_takes_over(
    running_operator: OperatorProcess,
    operator_kubeconfig: Path,
    objects: Objects,
    namespace: str,
    tmp_path: Path,
) -> None:
    standby = OperatorProcess(
        operator_kubeconfig, tmp_path, "--peering", "loraland-test", "--priority", "10"
    )
    standby.start()
    try:
        # Kopf starts a peered operator paused until it has seen the peers, so a
        # lower-priority replica never handles anything while the other one lives.
        until(
            lambda: "Initial authentication has finished" in standby.text(),
            "the standby to start",
            timeout=60,
        )
        for i in range(3):
            objects.apply(namespace, ftj_manifest(f"shared-{i}"))
        for i in range(3):
            objects.wait_phase("finetunejobs", namespace, f"shared-{i}", "Running")
        for i in range(3):
            assert len(objects.jobs(namespace, f"shared-{i}")) == 1
        assert "Handler" not in standby.text()  # it handled nothing while paused

        running_operator.stop()  # a clean exit removes it from the peering object
        until(
            lambda: "Resuming operations after the pause" in standby.text(),
            "the standby to resume",
            timeout=90,
        )
        objects.apply(namespace, ftj_manifest("after-failover"))
        objects.wait_phase("finetunejobs", namespace, "after-failover", "Running")
        assert len(objects.jobs(namespace, "after-failover")) == 1
    finally:
        standby.stop()
        if not running_operator.alive():
            running_operator.start()
