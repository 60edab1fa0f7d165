"""``loraland study -f``: a FineTuneStudy on one machine, one run after another.

Each run is the same FineTuneJob the operator would create (:func:`loraland.study.
matrix.expand`), written to ``OUT/runs/<run>/finetunejob.yaml`` and trained by the public
``loraland finetune -f`` in a subprocess (the pod's command, so there is one trainer path;
a subprocess also hands each run's memory back before the next). Adapters go to
``OUT/runs/<run>/adapter`` whatever ``template.output.uri`` says (that is the cluster's).

A run whose job file is unchanged and whose result file holds a result is reused, so an
interrupted study continues where it stopped and adding a task trains only that task.
A failed run is marked in the table and the others go on.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from loraland.api.finetunejob import API_VERSION, OutputSpec, format_validation_error
from loraland.api.progress import TrainingProgress, TrainingResult
from loraland.api.study import (
    FineTuneStudy,
    FineTuneStudySpec,
    StudySpecError,
)
from loraland.api.studystatus import RunPhase, RunRow, StudyTable
from loraland.study.matrix import Run, empty_table, expand
from loraland.validation import FINETUNESTUDY, Meta

RESULTS_FILE = "results.json"
Echo = Callable[[str], None]


def read_study(path: Path) -> tuple[str, FineTuneStudySpec]:
    """(name, spec) from a FineTuneStudy manifest; errors name the field."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StudySpecError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise StudySpecError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    try:
        manifest = FineTuneStudy.model_validate(document)
    except ValidationError as exc:
        reason = format_validation_error(exc)
        raise StudySpecError(f"{path}: not a FineTuneStudy manifest: {reason}") from None
    name = str(manifest.metadata.get("name") or path.stem)
    checked = FINETUNESTUDY(manifest.spec, Meta(name=name))
    if checked.spec is None or not checked.ok:
        raise StudySpecError(f"{path}: {checked.message}")
    return name, checked.spec


def local_runs(name: str, spec: FineTuneStudySpec, out: Path) -> list[Run]:
    """The matrix with each run's output redirected under ``out``."""
    runs = []
    for run in expand(name, spec):
        output = OutputSpec(uri=str(out / "runs" / run.name / "adapter"), adapter_name=run.name)
        runs.append(
            Run(
                run.name,
                run.base,
                run.task,
                run.variant,
                run.spec.model_copy(update={"output": output}),
            )
        )
    return runs


def job_document(run: Run) -> str:
    doc = {
        "apiVersion": API_VERSION,
        "kind": "FineTuneJob",
        "metadata": {"name": run.name},
        "spec": run.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass(frozen=True)
class RunFiles:
    root: Path

    @property
    def job(self) -> Path:
        return self.root / "finetunejob.yaml"

    @property
    def result(self) -> Path:
        return self.root / "result.json"

    @property
    def progress(self) -> Path:
        return self.root / "progress.jsonl"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def work(self) -> Path:
        return self.root / "work"


def finished_result(files: RunFiles, job_text: str) -> TrainingResult | None:
    """The earlier result of exactly this job, if there is one."""
    if not files.job.is_file() or files.job.read_text() != job_text:
        return None
    try:
        lines = files.result.read_text().strip().splitlines()
        return TrainingResult.model_validate_json(lines[-1]) if lines else None
    except (OSError, ValidationError):
        return None


def row_from_result(run: Run, result: TrainingResult | None, message: str | None) -> RunRow:
    row = RunRow(
        name=run.name,
        base=run.base.name,
        task=run.task.name,
        variant=run.variant.name if run.variant else None,
        attempts=1,
    )
    if result is None:
        row.phase = RunPhase.FAILED
        row.message = message
        return row
    row.phase = RunPhase.SUCCEEDED
    row.adapter_uri = result.adapter_uri
    if result.scores is not None:
        row.metric = result.scores.metric
        row.base_score = result.scores.base
        row.adapter_score = result.scores.adapter
        row.samples = result.scores.samples
    return row


def _last_progress(path: Path, offset: int) -> tuple[TrainingProgress | None, int]:
    """The newest progress line appended since ``offset``."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except OSError:
        return None, offset
    end = data.rfind(b"\n")
    if end < 0:
        return None, offset
    latest = None
    for line in data[:end].splitlines():
        try:
            latest = TrainingProgress.model_validate_json(line)
        except ValidationError:
            continue
    return latest, offset + end + 1


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(text[-lines:])[-500:]


class Display:
    """Two progress bars (the study, the current run) on a terminal; plain lines otherwise."""

    def __init__(self, total: int, echo: Echo, tty: bool, console: Any = None) -> None:
        self.echo = echo
        self.bar: Any = None
        if tty:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[note]}"),
                TimeElapsedColumn(),
                console=console,
            )
            self.bar.start()
            self.study = self.bar.add_task("study", total=total, note="")
            self.run = self.bar.add_task("run", total=1, note="", visible=False)

    def say(self, message: str) -> None:
        if self.bar is not None:
            self.bar.console.print(message, markup=False, highlight=False)
        else:
            self.echo(message)

    def start_run(self, name: str) -> None:
        if self.bar is not None:
            self.bar.reset(self.run, total=1, description=name, note="loading", visible=True)

    def progress(self, line: TrainingProgress) -> None:
        if self.bar is not None:
            loss = "" if line.loss is None else f"loss {line.loss:.4f}"
            self.bar.update(
                self.run,
                total=max(1, line.total_steps),
                completed=line.step,
                note=f"{line.phase} {loss}".strip(),
                refresh=True,
            )

    def end_run(self) -> None:
        if self.bar is not None:
            self.bar.update(self.run, visible=False)
            self.bar.advance(self.study)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def train_run(run: Run, files: RunFiles, job_text: str, display: Display) -> RunRow:
    files.root.mkdir(parents=True, exist_ok=True)
    files.job.write_text(job_text)
    for stale in (files.result, files.progress):
        stale.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "loraland.cli", "finetune",
        "-f", str(files.job),
        "--progress-file", str(files.progress),
        "--result-file", str(files.result),
        "--work-dir", str(files.work),
    ]  # fmt: skip
    display.start_run(run.name)
    offset = 0
    with files.log.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        while process.poll() is None:
            time.sleep(0.5)
            latest, offset = _last_progress(files.progress, offset)
            if latest is not None:
                display.progress(latest)
    result = finished_result(files, job_text) if process.returncode == 0 else None
    message = None
    if result is None:
        message = f"exit code {process.returncode}: {_log_tail(files.log)} (see {files.log})"
    return row_from_result(run, result, message)


def run_study(name: str, spec: FineTuneStudySpec, out: Path, echo: Echo, tty: bool) -> StudyTable:
    """Train (or reuse) every run in matrix order; write and return the table."""
    runs = local_runs(name, spec, out)
    table = empty_table(name, spec)
    display = Display(len(runs), echo, tty)
    try:
        for number, run in enumerate(runs, start=1):
            files = RunFiles(out / "runs" / run.name)
            job_text = job_document(run)
            previous = finished_result(files, job_text)
            if previous is not None:
                display.say(f"[{number}/{len(runs)}] {run.name}: reusing the finished run")
                row = row_from_result(run, previous, None)
            else:
                display.say(f"[{number}/{len(runs)}] {run.name}: training")
                started = time.monotonic()
                row = train_run(run, files, job_text, display)
                took = time.monotonic() - started
                outcome = (
                    f"adapter {row.adapter_score:.3f}, base {row.base_score or 0:.3f}"
                    if row.adapter_score is not None
                    else row.phase.value
                )
                display.say(f"[{number}/{len(runs)}] {run.name}: {outcome} ({took:.0f} s)")
                if row.phase is RunPhase.FAILED:
                    display.say(f"  failed: {row.message}")
            display.end_run()
            table.runs.append(row)
            save_table(table, out)
    finally:
        display.close()
    return table


def save_table(table: StudyTable, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS_FILE
    path.write_text(table.model_dump_json(by_alias=True, exclude_none=True, indent=1) + "\n")
    return path


def load_table(path: Path) -> StudyTable:
    try:
        return StudyTable.model_validate_json(path.read_text())
    except OSError as exc:
        raise StudySpecError(f"{path}: cannot read the results: {exc.strerror or exc}") from None
    except ValidationError as exc:
        raise StudySpecError(
            f"{path}: not a study results table: {exc.errors()[0]['msg']}"
        ) from None


def write_report(table: StudyTable, out: Path) -> Path:
    """report.md and heatmap.png in ``out``."""
    from loraland.study.plots import write_heatmap
    from loraland.study.report import report_markdown

    out.mkdir(parents=True, exist_ok=True)
    write_heatmap(table, out / "heatmap.png")
    report = out / "report.md"
    report.write_text(report_markdown(table, "heatmap.png"))
    return report
