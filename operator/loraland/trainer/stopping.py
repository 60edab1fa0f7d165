"""Stopping a run cleanly on SIGTERM.

SIGTERM is how Kubernetes stops a pod (deletion, preemption, a drain), SIGKILL following
after the grace period. Unhandled, Python as a container's PID 1 ignores it (the kernel
drops default-action signals sent to a PID namespace's init): the trainer trained on until
the SIGKILL, and when it finished inside the grace period it exited 0, so the Job took the
deleted pod for a success. Handled, the training loop finishes the step it is in, writes a
checkpoint there and the process exits 143 (128 + SIGTERM): the Job's retry resumes at that
step. Anywhere else (loading, scoring, publishing) the run stops at once, as the signal's
default action would.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

TERMINATED_EXIT_CODE = 128 + signal.SIGTERM


class Terminated(Exception):
    """The run stopped because it was asked to (SIGTERM)."""

    exit_code = TERMINATED_EXIT_CODE


class StopSignal:
    """Whether SIGTERM came, and whether it may interrupt what runs now."""

    def __init__(self) -> None:
        self.requested = False
        self._deferring = False

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if not self._deferring:
            raise Terminated("stopped by SIGTERM")

    @contextmanager
    def deferred(self) -> Iterator[Callable[[], bool]]:
        """Within, SIGTERM is only recorded: the caller polls what this yields and stops
        where stopping loses nothing."""
        if self.requested:
            raise Terminated("stopped by SIGTERM")
        self._deferring = True
        try:
            yield lambda: self.requested
        finally:
            self._deferring = False
        if self.requested:  # came after the caller's last poll
            raise Terminated("stopped by SIGTERM")


@contextmanager
def stop_on_sigterm() -> Iterator[StopSignal]:
    """Route SIGTERM to a :class:`StopSignal` while the block runs."""
    stop = StopSignal()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # only the main thread may set handlers; it never fires here
        return
    previous = signal.signal(signal.SIGTERM, stop.handle)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)
