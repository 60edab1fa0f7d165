"""Fixtures for the Helm chart's tests: a helm binary with its state in a temp dir.

The operator's test helpers (tests/integration/operator/optools.py) are reused, so that
folder goes on the path as its own conftest does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

_OPERATOR_TESTS = str(Path(__file__).resolve().parents[1] / "operator")
if _OPERATOR_TESTS not in sys.path:
    sys.path.insert(0, _OPERATOR_TESTS)

from cluster import ClusterError, bin_dir, find_binaries  # noqa: E402

Helm = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """``helm(*args)`` without a cluster (lint, template); fails with helm's stderr."""
    try:
        binary = find_binaries(bin_dir(os.environ))["helm"]
    except ClusterError as exc:  # says how to get the binaries
        pytest.fail(str(exc), pytrace=False)
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    env.pop("KUBECONFIG", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(binary), *args], capture_output=True, text=True, env=env, timeout=120
        )
        if proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run
