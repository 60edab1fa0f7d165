"""``loraland serve`` makes torch's OpenMP threads spin briefly, then wait passively, unless
told otherwise; threads other than the engine's run torch on themselves alone."""

from __future__ import annotations

import sys
import threading

import pytest
from loraland.serving.openmp import SPIN_COUNT, one_thread_here, wait_policy_defaults

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
