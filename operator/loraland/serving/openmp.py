"""How torch's OpenMP threads wait between parallel regions, chosen before torch loads.

libgomp's default is to spin about 300,000 iterations at every barrier; passive waiting
puts a thread to sleep at once. Neither suits a server: a decode step is hundreds of
short parallel regions with Python in between, and waking a sleeping sibling for each
costs tens of microseconds (on the 2-core development machine, a 32-row decode step of
the embedded model took 160 ms passive against 123 spinning), while a long spin burns
the time slice a descheduled sibling needs where other work shares the cores (with
libgomp's default, a 4-token request took 2.3-8.8 s on that machine under a test run,
against 0.65-1.4 s passive). ``loraland serve`` therefore waits passively after a short
spin: ``OMP_WAIT_POLICY=PASSIVE`` with ``GOMP_SPINCOUNT=10000`` (0.1 ms by libgomp's
estimate) took 116 ms a step idle, and with two busy processes on the two cores 372 ms against 374
passive (1.90 s against 1.96 at nice 10). Under ``PASSIVE`` libgomp drops the spin
whenever it runs more threads than there are CPUs, so a thread that is not the engine's
runs torch with one thread (:func:`one_thread_here`). libgomp reads these variables
once, when torch is first imported, so ``loraland serve`` sets them before that
(:mod:`loraland.serving.torch_defaults`); an operator who set ``OMP_WAIT_POLICY`` or
``GOMP_SPINCOUNT`` keeps that choice.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Mapping

#: Variables by which an operator has already chosen how OpenMP threads wait.
CHOSEN_BY = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

#: Spin iterations before a waiting thread sleeps (libgomp estimates 100 a microsecond).
SPIN_COUNT = 10_000


def wait_policy_defaults(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables to add to ``environ``: a short spin, then passive waiting, unless a
    policy is set."""
    if any(name in environ for name in CHOSEN_BY):
        return {}
    return {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": str(SPIN_COUNT)}


def one_thread_here() -> bool:
    """Run this thread's torch ops on this thread alone; False where torch's OpenMP is
    not libgomp.

    Each thread that enters a parallel region gets a pool of OpenMP threads of its own,
    kept while it lives, and once libgomp manages more threads than there are CPUs it
    stops spinning in every pool: after one adapter load on a pool thread, the engine's
    decode steps waited passively again (one adapter, 32 users: 134-150 tok/s with the
    spin as without it, 188-201 once loads ran on one thread). ``torch.set_num_threads``
    cannot do this: it sets the process-wide count (MKL's too), so the engine would
    lose its threads as well.
    """
    import torch

    torch.get_num_threads()  # torch's per-thread setup first: it would reset the count
    libgomp = _loaded_libgomp()
    if libgomp is None:
        return False
    libgomp.omp_set_num_threads(1)
    return True


@functools.cache
def _loaded_libgomp() -> ctypes.CDLL | None:
    """The libgomp torch loaded (found by its soname, never loaded anew), or None."""
    try:
        return ctypes.CDLL("libgomp.so.1", mode=os.RTLD_NOLOAD)
    except OSError:
        return None
