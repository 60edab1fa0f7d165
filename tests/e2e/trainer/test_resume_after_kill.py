"""Kill or stop a training run after its first checkpoint, re-run it, and get the same
adapter as a run that was never interrupted.

The data is a JSONL file with two broken lines, so this also runs the file path of the
pipeline end to end and checks that bad rows are counted, not dropped silently.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from loraland.api.progress import TrainingFailure, TrainingProgress, TrainingResult
from loraland.data.registry import get_task
from loraland.data.synthetic import synthetic_rows
from safetensors.torch import load_file

STEPS = 8


def _command(job: Path, work: Path, output: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "loraland.cli",
        "finetune",
        "-f",
        str(job),
        "--work-dir",
        str(work),
        "--output",
        str(output),
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory, base_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("resume")
    rows = synthetic_rows(get_task("sentiment"), 60, seed=0, split="train")
    lines = [json.dumps({"text": r["review"], "label": r["output"]}) for r in rows]
    lines.insert(3, "{broken json")
    lines.insert(10, json.dumps({"text": "no label here"}))
    (root / "data.jsonl").write_text("\n".join(lines) + "\n")
    spec = {
        "baseModel": {"uri": "builtin://smollm2-135m-instruct"},
        "dataset": {
            "uri": str(root / "data.jsonl"),
            "promptTemplate": "Review: {text}\nSentiment:",
            "outputField": "label",
            "evalFraction": 0.1,
        },
        "lora": {"rank": 4, "alpha": 8},
        "training": {
            "maxSteps": STEPS,
            "batchSize": 2,
            "maxSeqLength": 48,
            "learningRate": 0.001,
            "checkpointEverySteps": 2,
            "seed": 3,
        },
        "output": {"uri": str(root / "unused")},
    }
    (root / "job.yaml").write_text(yaml.safe_dump(spec))
    return root / "job.yaml"


def _result(stdout: str) -> tuple[list[TrainingProgress], TrainingResult]:
    lines = stdout.splitlines()
    return [
        TrainingProgress.model_validate_json(x) for x in lines[:-1]
    ], TrainingResult.model_validate_json(lines[-1])


Reference = tuple[TrainingResult, dict[str, torch.Tensor]]


@pytest.fixture(scope="module")
def uninterrupted(job: Path) -> Reference:
    """The same job run straight through: what every interrupted run must end at."""
    root = job.parent
    straight = subprocess.run(
        _command(job, root / "work-straight", root / "out-straight"),
        capture_output=True,
        text=True,
        timeout=400,
        env=_env(),
    )
    assert straight.returncode == 0, straight.stderr[-3000:]
    _, reference = _result(straight.stdout)
    assert reference.resumed_from_step is None and reference.steps == STEPS
    return reference, load_file(str(root / "out-straight" / "adapter_model.safetensors"))


def _assert_same_weights(output: Path, reference: Reference) -> None:
    resumed = load_file(str(output / "adapter_model.safetensors"))
    assert resumed.keys() == reference[1].keys()
    for name, tensor in reference[1].items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-5, atol=1e-6)


def _start_until_a_checkpoint(command: list[str], work: Path) -> subprocess.Popen[bytes]:
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    deadline = time.monotonic() + 400
    checkpoint = work / "checkpoints" / "step-00000002" / "state.json"
    while not checkpoint.exists():
        assert run.poll() is None, run.stderr.read().decode() if run.stderr else ""
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    return run


def _last_checkpoint(work: Path) -> int:
    return max(
        int(p.name.split("-")[1])
        for p in (work / "checkpoints").glob("step-*")
        if (p / "state.json").exists()
    )


def test_killed_run_resumes_to_the_same_adapter(job: Path, uninterrupted: Reference) -> None:
    root = job.parent
    work, output = root / "work-killed", root / "out-killed"
    first = _start_until_a_checkpoint(_command(job, work, output), work)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL
    assert not output.exists()  # killed before it could publish anything
    killed_at = _last_checkpoint(work)
    assert 2 <= killed_at < STEPS

    again = subprocess.run(
        _command(job, work, output), capture_output=True, text=True, timeout=400, env=_env()
    )
    assert again.returncode == 0, again.stderr[-3000:]
    progress, result = _result(again.stdout)
    training = [p for p in progress if p.phase == "training"]
    # One line announces the resume (what status.progress.resumedFromStep shows), then it
    # continues where it stopped instead of restarting at 1; every line carries the resume.
    assert [p.step for p in training] == list(range(killed_at, STEPS + 1))
    assert {p.resumed_from_step for p in progress if p.phase != "loading"} == {killed_at}
    assert result.steps == STEPS and result.resumed_from_step == killed_at
    assert result.bad_rows == 2 and result.train_samples == 54  # 60 good rows, 10% held out
    assert "resuming from" in again.stderr
    assert "2 bad rows skipped" in again.stderr and "data.jsonl:4: invalid JSON" in again.stderr
    _assert_same_weights(output, uninterrupted)

    # A re-run of a finished job trains nothing and publishes the same weights again.
    rerun = subprocess.run(
        _command(job, work, output), capture_output=True, text=True, timeout=400, env=_env()
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    progress, final = _result(rerun.stdout)
    # Only the line that announces the resume at the last step: no step was trained.
    training = [(p.step, p.resumed_from_step) for p in progress if p.phase == "training"]
    assert training == [(STEPS, STEPS)]
    assert final.steps == STEPS and final.sha256 == result.sha256 == uninterrupted[0].sha256


def test_sigterm_checkpoints_where_it_stopped_and_exits_143(
    job: Path, uninterrupted: Reference
) -> None:
    """What a deleted or preempted training pod gets: the step in progress is finished and
    checkpointed, the exit code says it was stopped (so the Job retries), nothing is
    published, and the next run resumes at that step."""
    root = job.parent
    work, output, result_file = root / "work-term", root / "out-term", root / "term-result"
    command = [*_command(job, work, output), "--result-file", str(result_file)]
    first = _start_until_a_checkpoint(command, work)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=120)
    stderr = err.decode()
    assert first.returncode == 143, stderr[-3000:]
    stopped_at = _last_checkpoint(work)
    assert f"stopped by SIGTERM after step {stopped_at} of {STEPS}" in stderr, stderr[-3000:]
    failure = TrainingFailure.model_validate_json(result_file.read_text())
    assert failure.reason == "Terminated" and f"resumes at step {stopped_at}" in failure.message
    assert not output.exists()

    again = subprocess.run(
        _command(job, work, output), capture_output=True, text=True, timeout=400, env=_env()
    )
    assert again.returncode == 0, again.stderr[-3000:]
    _, result = _result(again.stdout)
    assert result.resumed_from_step == stopped_at and result.steps == STEPS
    _assert_same_weights(output, uninterrupted)
