"""Progress lines: JSON on stdout and in the progress file; a bar on a terminal."""

from __future__ import annotations

import io
import json
from pathlib import Path

from loraland.api.progress import TrainingProgress
from loraland.trainer.progress import ProgressReporter


def _progress(step: int) -> TrainingProgress:
    return TrainingProgress(
        step=step, total_steps=4, epoch=step / 4, loss=1.0 / step, learning_rate=1e-3
    )


def test_lines_go_to_stdout_and_file(tmp_path: Path) -> None:
    out = io.StringIO()
    file = tmp_path / "p" / "progress.jsonl"
    with ProgressReporter(file, stream=out, tty=False) as reporter:
        reporter.phase("loading")
        for step in (1, 2):
            reporter.emit(_progress(step))
        reporter.result_line('{"event":"result"}')
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["progress"] * 3 + ["result"]
    assert json.loads(lines[0]) == {
        "event": "progress",
        "phase": "loading",
        "step": 0,
        "totalSteps": 0,
        "epoch": 0.0,
    }
    assert json.loads(lines[2])["step"] == 2 and json.loads(lines[2])["totalSteps"] == 4
    assert file.read_text().splitlines() == lines[:3]


def test_terminal_gets_a_bar_and_still_the_lines(tmp_path: Path) -> None:
    out = io.StringIO()
    with ProgressReporter(None, stream=out, tty=True) as reporter:
        for step in (1, 2, 3, 4):
            reporter.emit(_progress(step))
    text = out.getvalue()
    assert '"step":4' in text and "training" in text


def test_phase_lines_after_a_resume_keep_saying_so(tmp_path: Path) -> None:
    out = io.StringIO()
    with ProgressReporter(None, stream=out, tty=False) as reporter:
        reporter.emit(TrainingProgress(step=2, total_steps=4, epoch=0.5, resumed_from_step=2))
        reporter.phase("evaluating")
    last = json.loads(out.getvalue().splitlines()[-1])
    assert last["phase"] == "evaluating" and last["resumedFromStep"] == 2
