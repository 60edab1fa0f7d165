"""``loraland serve`` sets torch's runtime defaults (OpenMP waits, huge pages) before torch
loads, and leaves alone what the operator set."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from loraland.serving.openmp import SPIN_COUNT
from loraland.serving.torch_defaults import (
    HUGE_PAGES,
    apply_serve_defaults,
    huge_page_defaults,
    serve_defaults,
)

ALL = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": str(SPIN_COUNT), HUGE_PAGES: "1"}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, ALL),
        ({"OMP_NUM_THREADS": "4"}, ALL),
        ({HUGE_PAGES: "0"}, {k: v for k, v in ALL.items() if k != HUGE_PAGES}),
        ({"OMP_WAIT_POLICY": "ACTIVE"}, {HUGE_PAGES: "1"}),  # the operator's choice stands
    ],
)
def test_defaults(environ: dict[str, str], expected: dict[str, str]) -> None:
    assert serve_defaults(environ) == expected
    assert huge_page_defaults({HUGE_PAGES: "0"}) == {}


def test_too_late_once_torch_is_loaded() -> None:
    import torch  # noqa: F401

    environ: dict[str, str] = {}
    assert apply_serve_defaults(environ) is False and environ == {}


_CHILD = """
import os, sys
from loraland.serving.torch_defaults import apply_serve_defaults
for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "THP_MEM_ALLOC_ENABLE"):
    os.environ.pop(name, None)
assert "torch" not in sys.modules
applied = apply_serve_defaults()
import torch
tensor = torch.empty(64 << 18)  # 64 MiB
tensor.fill_(1.0)  # committed: huge pages where the allocation asked for them
rollup = open("/proc/self/smaps_rollup").read()
print(applied, os.environ["OMP_WAIT_POLICY"], os.environ["GOMP_SPINCOUNT"])
print(rollup)
"""


def _kernel_huge_pages() -> str | None:
    """The kernel's THP mode (``always``, ``madvise``, ``never``), None where unknown."""
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not path.is_file():
        return None
    chosen = re.search(r"\[(\w+)\]", path.read_text())
    return chosen.group(1) if chosen else None


@pytest.mark.timeout(90)
def test_applied_before_torch_loads_and_torch_takes_huge_pages() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=80, check=False
    )
    assert result.returncode == 0, result.stderr
    first, _, rollup = result.stdout.partition("\n")
    assert first.split() == ["True", "PASSIVE", str(SPIN_COUNT)]
    if _kernel_huge_pages() not in {"always", "madvise"}:
        pytest.skip("this kernel gives no transparent huge pages")
    huge = re.search(r"^AnonHugePages:\s+(\d+) kB", rollup, re.M)
    assert huge is not None, rollup
    # The variable is the one this torch reads: most of the tensor sits in huge pages.
    assert int(huge.group(1)) >= 32 << 10, rollup


@pytest.mark.timeout(60)
def test_the_serve_command_applies_them_before_importing_torch() -> None:
    # The CLI module and the serve command's own module load without torch, so the
    # defaults set at the top of ``serve`` are in place when the server imports torch.
    code = "import sys, loraland.cli, loraland.serving.commands; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=50, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
