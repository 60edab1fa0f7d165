"""The sample job file in tests/data stays a valid FineTuneJob."""

from __future__ import annotations

from pathlib import Path

from loraland.pipeline.jobfile import build_spec, read_document

SAMPLE = Path(__file__).parents[2] / "data" / "finetunejob-sample.yaml"


def test_sample_job_file_is_valid() -> None:
    name, spec = build_spec(read_document(SAMPLE), [])
    assert name == "intents-smollm2"
    assert spec.dataset.task == "intents" and spec.evaluation is not None
    assert spec.training.max_steps == 40 and spec.output.adapter_name == "intents"
