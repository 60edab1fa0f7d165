"""Progress reporting: JSON lines on stdout and in a file, a rich bar on a terminal.

Each line is a :class:`loraland.api.progress.TrainingProgress`. The operator tails the
pod log for them, so stdout carries nothing else except the final result line; human
messages go to stderr. When stdout is a terminal a progress bar is drawn as well and the
JSON lines are printed above it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from loraland.api.progress import TrainingProgress


class ProgressReporter:
    def __init__(
        self,
        progress_file: Path | None = None,
        stream: IO[str] | None = None,
        tty: bool | None = None,
    ) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.progress_file = progress_file
        self._file: IO[str] | None = None
        if progress_file is not None:
            progress_file.parent.mkdir(parents=True, exist_ok=True)
            self._file = progress_file.open("a", encoding="utf-8")
        self._bar: Progress | None = None
        self._task: Any = None
        self.last: TrainingProgress | None = None

    def __enter__(self) -> ProgressReporter:
        if self.tty:
            console = Console(file=self.stream)
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TimeRemainingColumn(),
                console=console,
            )
            self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def emit(self, progress: TrainingProgress) -> None:
        self.last = progress
        line = progress.to_line()
        if self._file is not None:
            self._file.write(line + "\n")
            self._file.flush()
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
            loss = "-" if progress.loss is None else f"{progress.loss:.4f}"
            if self._task is None:
                self._task = self._bar.add_task(
                    progress.phase, total=progress.total_steps, loss=loss
                )
            self._bar.update(
                self._task,
                completed=progress.step,
                total=progress.total_steps,
                description=progress.phase,
                loss=loss,
            )
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def phase(self, phase: str) -> None:
        """A line announcing a new phase, carrying the last known step figures."""
        last = self.last
        self.emit(
            TrainingProgress(
                phase=phase,  # type: ignore[arg-type]
                step=last.step if last else 0,
                total_steps=last.total_steps if last else 0,
                epoch=last.epoch if last else 0.0,
                loss=last.loss if last else None,
                resumed_from_step=last.resumed_from_step if last else None,
            )
        )

    def result_line(self, line: str) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        self.stream.write(line + "\n")
        self.stream.flush()
