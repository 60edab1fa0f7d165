"""The progress relay: trainer files -> this FineTuneJob's status, and nothing else.

Runs beside the trainer in the training pod (a native sidecar) as
``loraland operator relay-progress``. The trainer appends one
:class:`~loraland.api.progress.TrainingProgress` JSON line per logging step to the
progress file and writes one :class:`~loraland.api.progress.TrainingResult` at the end.
The relay tails both and merge-patches ``status.progress`` (and, at the end,
``status.adapter`` / ``status.scores``) of its own FineTuneJob through the ``/status``
subresource, with a token whose Role allows ``get``/``patch`` on that one object only.

Reading is incremental and tolerant: a half-written last line waits for the next poll, a
line that is not progress JSON is skipped. Only the newest line matters, so a slow API
server never builds a backlog. On SIGTERM (the kubelet stops sidecars after the trainer
exits) it drains the files once more, posts what is new, writes the result to its own
termination message (the operator's fallback if the patch never got through) and exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError

from loraland.api.progress import TrainingProgress, TrainingResult
from loraland.api.status import progress_status, result_status, utc_now
from loraland.controller.kube import Kube

log = logging.getLogger("loraland.relay")


@dataclass
class ProgressTail:
    """Reads the lines appended to a file since the last call."""

    path: Path
    offset: int = 0
    partial: bytes = b""
    skipped: int = 0

    def read_latest(self) -> TrainingProgress | None:
        """The newest complete progress line since the last call, if any."""
        try:
            with self.path.open("rb") as fh:
                size = fh.seek(0, 2)
                if size < self.offset:  # truncated or replaced: start over
                    self.offset, self.partial = 0, b""
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return None
        self.offset += len(chunk)
        data = self.partial + chunk
        lines = data.split(b"\n")
        self.partial = lines.pop()  # b"" when the chunk ended with a newline
        latest = None
        for line in lines:
            parsed = parse_progress_line(line)
            if parsed is None:
                if line.strip():
                    self.skipped += 1
                continue
            latest = parsed
        return latest


def parse_progress_line(line: bytes | str) -> TrainingProgress | None:
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    text = text.strip()
    if not text.startswith("{"):
        return None
    try:
        return TrainingProgress.model_validate_json(text)
    except ValidationError:
        return None


def read_result(path: Path) -> TrainingResult | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    if not text:
        return None
    try:
        return TrainingResult.model_validate_json(text.splitlines()[-1])
    except ValidationError:
        return None  # still being written, or not ours; the next poll looks again


def progress_patch(progress: TrainingProgress, *, now: str) -> dict[str, Any]:
    """Merge patch for ``status.progress``; nulls clear fields the new line lacks."""
    body = progress_status(progress, now=now).model_dump(mode="json", by_alias=True)
    return {"status": {"progress": body}}


def result_patch(result: TrainingResult, adapter_name: str | None) -> dict[str, Any]:
    adapter, scores = result_status(result, adapter_name)
    status: dict[str, Any] = {"adapter": adapter.to_wire()}
    if scores is not None:
        status["scores"] = scores.to_wire()
    return {"status": status}


@dataclass
class Relay:
    kube: Kube
    name: str
    namespace: str
    progress_file: Path
    result_file: Path
    adapter_name: str | None = None
    termination_log: Path | None = Path("/dev/termination-log")
    tail: ProgressTail = field(init=False)
    pending_progress: TrainingProgress | None = None
    result_posted: bool = False
    result_written: bool = False
    patches: int = 0
    failures: int = 0

    def __post_init__(self) -> None:
        self.tail = ProgressTail(self.progress_file)

    def _patch(self, body: dict[str, Any]) -> bool:
        try:
            self.kube.merge_patch(
                "loraland.dev/v1alpha1",
                "FineTuneJob",
                self.namespace,
                self.name,
                body,
                subresource="status",
            )
        except Exception as exc:
            self.failures += 1
            log.warning(
                "patching finetunejob %s/%s status failed: %s", self.namespace, self.name, exc
            )
            return False
        self.patches += 1
        return True

    def poll(self) -> None:
        """One round: post the newest progress line, then the result once it exists."""
        latest = self.tail.read_latest()
        if latest is not None:
            self.pending_progress = latest
        if self.pending_progress is not None and self._patch(
            progress_patch(self.pending_progress, now=utc_now())
        ):
            self.pending_progress = None
        if not self.result_posted:
            result = read_result(self.result_file)
            if result is not None:
                self._write_termination_log(result)
                self.result_posted = self._patch(result_patch(result, self.adapter_name))

    def _write_termination_log(self, result: TrainingResult) -> None:
        if self.result_written or self.termination_log is None:
            return
        try:
            self.termination_log.write_text(result.to_line() + "\n", encoding="utf-8")
            self.result_written = True
        except OSError:
            self.result_written = True  # not in a pod; nothing to fall back on

    def run(self, *, interval: float, stop: threading.Event) -> None:
        while not stop.is_set():
            self.poll()
            stop.wait(interval)
        self.poll()  # the trainer has exited: its last lines and the result are complete


def run_until_signalled(relay: Relay, interval: float) -> None:
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    relay.run(interval=interval, stop=stop)
    log.info(
        "relay for %s/%s done: %d patches, %d failed, result posted: %s",
        relay.namespace,
        relay.name,
        relay.patches,
        relay.failures,
        relay.result_posted,
    )
