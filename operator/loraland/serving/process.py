"""Running ``loraland serve`` as a child process: wait for health, stop it cleanly.

The demo and the end-to-end tests both start a real server as a subprocess; this is the
one place that knows how to tell it is ready and how to take it down.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx


class ServerStartError(RuntimeError):
    """The server exited or never became healthy; the message ends with its log's tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a child server to bind)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.is_file() else ""


def wait_until_healthy(
    url: str,
    process: subprocess.Popen[bytes],
    log: Path,
    timeout_s: float,
    poll_s: float = 0.5,
    name: str = "loraland serve",
) -> None:
    """Poll ``url``/health until it answers 200; raise if the process dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise ServerStartError(
                f"{name} exited with {process.returncode}; see {log}:\n{_tail(log)}"
            )
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise ServerStartError(
                f"{name} not healthy after {timeout_s:.0f} s; see {log}:\n{_tail(log)}"
            )
        time.sleep(poll_s)


def stop(process: subprocess.Popen[bytes], grace_s: float = 30) -> None:
    """SIGTERM (the server drains), then SIGKILL if it is still there after ``grace_s``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
