"""A real fine-tune of the embedded model through the CLI, then `loraland eval`.

The task is the synthetic ``intents`` classification: six intent codes the base model
cannot guess, so the base scores near zero and a few dozen LoRA steps lift the adapter
far above it. This is the LoRA Land loop in miniature, on two CPU cores.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from loraland.api.adapter import AdapterMetadata
from loraland.api.evaluation import EvalReport
from loraland.api.progress import TrainingProgress, TrainingResult
from loraland.settings import Settings

STEPS = 24


def run_cli(*args: str, timeout: float = 480) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loraland.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, base_model_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ft")
    job = {
        "apiVersion": "loraland.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "intents-e2e"},
        "spec": {
            "baseModel": {"uri": "builtin://smollm2-135m-instruct"},
            "dataset": {"task": "intents", "maxSamples": 400},
            "lora": {"rank": 8, "alpha": 16, "dropout": 0.05},
            "training": {
                "maxSteps": STEPS,
                "batchSize": 8,
                "learningRate": 0.002,
                "warmupRatio": 0.1,
                "maxSeqLength": 64,
                "checkpointEverySteps": 0,
                "seed": 1,
            },
            "evaluation": {"maxSamples": 16, "batchSize": 16, "compareBase": False},
            "output": {"uri": str(root / "adapters" / "intents")},
        },
    }
    (root / "job.yaml").write_text(yaml.safe_dump(job))
    done = run_cli(
        "finetune",
        "-f",
        str(root / "job.yaml"),
        "--work-dir",
        str(root / "work"),
        "--progress-file",
        str(root / "progress.jsonl"),
        "--result-file",
        str(root / "result.json"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (root / "stdout.txt").write_text(done.stdout)
    return {"root": root, "adapter": root / "adapters" / "intents"}


def test_stdout_is_progress_lines_then_the_result(trained: dict[str, Path]) -> None:
    root = trained["root"]
    lines = (root / "stdout.txt").read_text().splitlines()
    progress = [TrainingProgress.model_validate_json(line) for line in lines[:-1]]
    training = [p for p in progress if p.phase == "training"]
    assert [p.step for p in training] == list(range(1, STEPS + 1))
    assert all(
        p.total_steps == STEPS and p.loss is not None and p.learning_rate is not None
        for p in training
    )
    assert training[-1].eta_seconds == 0.0 and training[-1].tokens_per_second
    assert training[-1].loss < training[0].loss
    assert [p.phase for p in progress if p.phase != "training"] == [
        "loading",
        "evaluating",
        "publishing",
        "done",
    ]
    assert (root / "progress.jsonl").read_text().splitlines() == lines[:-1]
    result = TrainingResult.model_validate_json(lines[-1])
    assert (root / "result.json").read_text() == lines[-1]
    assert len(lines[-1].encode()) < 4096
    assert result.steps == STEPS and result.bad_rows == 0 and result.train_samples == 400
    assert (
        result.scores is not None and result.scores.task == "intents" and result.scores.base is None
    )


def test_adapter_is_plain_peft_with_metadata(trained: dict[str, Path], settings: Settings) -> None:
    from loraland.modeling import load_base_model
    from peft import PeftModel
    from safetensors.torch import load_file

    adapter = trained["adapter"]
    files = {p.name for p in adapter.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "loraland.json"} <= files
    assert not [name for name in files if ".tmp" in name]
    weights = adapter / "adapter_model.safetensors"
    meta = AdapterMetadata.model_validate_json((adapter / "loraland.json").read_text())
    assert meta.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert meta.size_bytes == weights.stat().st_size
    assert meta.name == "intents-e2e" and meta.task == "intents" and meta.steps == STEPS
    assert meta.base_model == "builtin://smollm2-135m-instruct"
    assert meta.hyperparameters["lora"]["targetModules"] == ["q_proj", "v_proj"]
    assert (
        meta.scores is not None and meta.scores.samples == 16 and meta.scores.metric == "accuracy"
    )
    result = TrainingResult.model_validate_json((trained["root"] / "result.json").read_text())
    assert result.sha256 == meta.sha256 and result.scores is not None
    assert result.scores.adapter == meta.scores.adapter
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert (
        config["r"] == 8
        and Path(config["base_model_name_or_path"]).is_dir()  # a path runtimes read
    )

    base = load_base_model("builtin://smollm2-135m-instruct", settings, device="cpu")
    model = PeftModel.from_pretrained(base.model, str(adapter))
    saved = load_file(str(weights))
    loaded = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert len(loaded) == len(saved) == 2 * 2 * 30  # A and B, q and v, 30 layers
    some = next(iter(saved))
    name = some.replace(".weight", ".default.weight")
    assert (loaded[name] == saved[some]).all()
    assert float(saved[some].abs().sum()) > 0


def test_eval_shows_the_adapter_beating_the_base(trained: dict[str, Path]) -> None:
    report_path = trained["root"] / "report.json"
    done = run_cli(
        "eval",
        "--base",
        "builtin://smollm2-135m-instruct",
        "--adapter",
        str(trained["adapter"]),
        "--task",
        "intents",
        "--max-samples",
        "40",
        "--batch-size",
        "40",
        "-o",
        str(report_path),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = EvalReport.model_validate_json(report_path.read_text())
    scores = {r.name: r.score for r in report.results}
    assert set(scores) == {"base", "intents-e2e"} and report.samples == 40
    assert scores["intents-e2e"] >= scores["base"] + 0.3, scores
    # The printed table carries both rows.
    assert "base" in done.stdout and "intents-e2e" in done.stdout
