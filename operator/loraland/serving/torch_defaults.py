"""What ``loraland serve`` puts in its environment before torch loads, unless the operator
set it already: how torch's OpenMP threads wait (:mod:`loraland.serving.openmp`), and
transparent huge pages for torch's large CPU tensors.

Huge pages: PyTorch backs CPU allocations of 2 MiB and more with transparent huge pages
when ``THP_MEM_ALLOC_ENABLE`` is set (it asks with ``madvise``, so it works where the
kernel's mode is ``madvise``, the common default, as well as ``always``). A many-adapter
decode step reads each row's adapter pages from pools of hundreds of MB at scattered
places, a few KB here and there, and with 4 KiB pages nearly every page read also walks
the page tables. On the 2-core development machine, the native LoRA op over the embedded
model's 120 modules (``benchmarks/serving/lora_step.py``, Zipf draw over 500 resident
adapters) took 6.6-6.8 ms a step with huge pages against 7.5-8.1 without; in a server
alternating 30 s windows of 32 users, 40 adapters of ranks 4/8/16/64 ran at 0.93x the
tokens/s of 40 rank-8 ones with them, 0.89x without, and a bare 32-row decode step of
the base model took 1-3% less. The cost: memory is committed 2 MiB at a time, so a pool
that holds one adapter holds its first 2 MiB (within the adapter budget it was sized
to), and the first write into each 2 MiB zeroes all of it at once. ``THP_MEM_ALLOC_ENABLE=0``
turns it off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping

from loraland.serving.openmp import wait_policy_defaults

#: PyTorch's switch for huge pages under its CPU allocations of 2 MiB and more.
HUGE_PAGES = "THP_MEM_ALLOC_ENABLE"


def huge_page_defaults(environ: Mapping[str, str]) -> dict[str, str]:
    """The variable to add to ``environ``: huge pages on, unless it is set."""
    return {} if HUGE_PAGES in environ else {HUGE_PAGES: "1"}


def serve_defaults(environ: Mapping[str, str]) -> dict[str, str]:
    """Every variable ``loraland serve`` adds to ``environ`` (benchmarks give the servers
    they compare the same)."""
    return {**wait_policy_defaults(environ), **huge_page_defaults(environ)}


def apply_serve_defaults(environ: MutableMapping[str, str] | None = None) -> bool:
    """Add :func:`serve_defaults` to this process's environment; False when it is too
    late (torch already loaded: libgomp and torch's allocator read them once) or there
    was nothing to add."""
    if "torch" in sys.modules:
        return False
    target = os.environ if environ is None else environ
    extra = serve_defaults(target)
    target.update(extra)
    return bool(extra)
