"""Locust's ``--run-time`` counts from the start of the run, however long the imports took.

gevent's libev loop measures a new timer from its cached clock, which only moves when the
loop runs. Locust starts the run-time timer before the loop has run since the imports, so
on a busy machine a 10 s level used to end after 0.3 s with no request done. The ``init``
listener brings the clock up to date. Run in a child process: importing Locust
monkey-patches the standard library.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

_CHILD = """
import time
from loraland.loadtest import users
import gevent
from locust.env import Environment

loop = gevent.get_hub().loop
loop.update_now()
# Busy, not sleeping (a sleep would run the loop): like slow imports on a loaded machine.
while time.time() - loop.now() < 1.0:
    pass
print("before", time.time() - loop.now())
users._on_init(Environment())
print("after", time.time() - loop.now())
"""


@pytest.mark.timeout(120)
def test_init_listener_brings_the_loop_clock_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=100, check=False
    )
    assert result.returncode == 0, result.stderr
    lag = {k: float(v) for k, v in (line.split() for line in result.stdout.splitlines())}
    assert lag["before"] >= 1.0  # the loop's clock was behind, as after slow imports
    assert lag["after"] < lag["before"] - 0.9  # and no longer is
