"""How torch's OpenMP threads wait between parallel regions, chosen before torch loads.

libgomp's default is to spin (about 300,000 iterations) at every barrier. A server with
the CPUs to itself gains a few microseconds per region from that; a server whose cores
other processes share (a pod next to others on a node, a CI machine) loses far more:
the spinning thread burns the time slice its descheduled sibling needs to reach the
barrier. Measured on the shared 2-core development machine with torch's two threads,
a 4-token request on an adapter took 2.3-8.8 s (median 5.8) spinning and 0.65-1.4 s
with passive waiting; with one thread, 0.6 s either way. In the load-test e2e sweep
(2 users, 15 s) that is 0-2 answers against 17-19. So ``loraland serve`` waits
passively unless the operator chose a policy (``OMP_WAIT_POLICY`` or
``GOMP_SPINCOUNT`` in the environment). libgomp reads these once, when torch is first
imported, so this runs before that and does nothing after it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping

#: Variables by which an operator has already chosen how OpenMP threads wait.
CHOSEN_BY = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def wait_policy_defaults(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables to add to ``environ``: passive waiting, unless a policy is set."""
    if any(name in environ for name in CHOSEN_BY):
        return {}
    return {"OMP_WAIT_POLICY": "PASSIVE"}


def apply_wait_policy(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set the default policy in this process's environment; False when it is too late
    (torch already loaded) or the operator chose one."""
    if "torch" in sys.modules:
        return False
    target = os.environ if environ is None else environ
    extra = wait_policy_defaults(target)
    target.update(extra)
    return bool(extra)
