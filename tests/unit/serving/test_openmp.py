"""``loraland serve`` makes torch's OpenMP threads spin briefly, then wait passively, unless
told otherwise; threads other than the engine's run torch on themselves alone."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from loraland.serving.openmp import (
    SPIN_COUNT,
    apply_wait_policy,
    one_thread_here,
    wait_policy_defaults,
)

DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": str(SPIN_COUNT)}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, DEFAULTS),
        ({"OMP_NUM_THREADS": "4"}, DEFAULTS),
        ({"OMP_WAIT_POLICY": "ACTIVE"}, {}),  # the operator's choice stands
        ({"GOMP_SPINCOUNT": "10000"}, {}),
    ],
)
def test_defaults(environ: dict[str, str], expected: dict[str, str]) -> None:
    assert wait_policy_defaults(environ) == expected


def test_too_late_once_torch_is_loaded() -> None:
    import torch  # noqa: F401

    environ: dict[str, str] = {}
    assert apply_wait_policy(environ) is False and environ == {}


_CHILD = """
import os, sys
from loraland.serving.openmp import apply_wait_policy
os.environ.pop("OMP_WAIT_POLICY", None)
os.environ.pop("GOMP_SPINCOUNT", None)
assert "torch" not in sys.modules
print(apply_wait_policy(), os.environ["OMP_WAIT_POLICY"], os.environ["GOMP_SPINCOUNT"])
"""


@pytest.mark.timeout(60)
def test_applied_before_torch_loads() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=50, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "PASSIVE", str(SPIN_COUNT)]


@pytest.mark.timeout(60)
def test_the_serve_command_applies_it_before_importing_torch() -> None:
    # The CLI module and the serve command's own module load without torch, so the
    # policy set at the top of ``serve`` is in place when the server imports torch.
    code = "import sys, loraland.cli, loraland.serving.commands; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=50, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_one_thread_here_leaves_other_threads_their_count() -> None:
    import torch

    before = torch.get_num_threads()
    seen: dict[str, object] = {}

    def load() -> None:
        seen["limited"] = one_thread_here()
        torch.ones(1 << 20).mul_(2)  # big enough for a parallel region, were there threads
        seen["threads"] = torch.get_num_threads()

    thread = threading.Thread(target=load)
    thread.start()
    thread.join()
    # torch's wheels for Linux ship libgomp; elsewhere the call says it did nothing.
    assert seen["threads"] == (1 if seen["limited"] else before)
    if sys.platform == "linux":
        assert seen["limited"] is True
    assert torch.get_num_threads() == before
