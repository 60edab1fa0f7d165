"""Job files (manifest or bare spec), flag overrides, and errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from loraland.api.finetunejob import FineTuneJobSpec, SpecError, parse_job_document
from loraland.api.progress import TrainingProgress, TrainingResult
from loraland.pipeline.finetune import adapter_name, result_text
from loraland.pipeline.jobfile import build_spec, parse_assignment, read_document

SPEC = {
    "baseModel": {"uri": "builtin://smollm2-135m-instruct"},
    "dataset": {"task": "sentiment", "maxSamples": 100},
    "lora": {"rank": 4, "targetModules": ["q_proj"]},
    "training": {"maxSteps": 10, "learningRate": 0.001},
    "output": {"uri": "/tmp/out/a1"},
}
MANIFEST = {
    "apiVersion": "loraland.dev/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "sentiment-a1", "namespace": "ml", "labels": {"team": "x"}},
    "spec": SPEC,
}


def test_manifest_and_bare_spec_give_the_same_spec() -> None:
    name, from_manifest = parse_job_document(json.loads(json.dumps(MANIFEST)))
    none, bare = parse_job_document(json.loads(json.dumps(SPEC)))
    assert (name, none) == ("sentiment-a1", None)
    assert from_manifest == bare
    assert bare.training.max_steps == 10 and bare.lora.target_modules == ["q_proj"]
    # snake_case is accepted too, and the wire form round-trips.
    again = FineTuneJobSpec.model_validate(bare.model_dump())
    assert again == FineTuneJobSpec.model_validate(bare.model_dump(by_alias=True))


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"training": {"maxStep": 3}}, "training.maxStep: unknown field"),
        ({"lora": {"rank": 0}}, "lora.rank: Input should be greater than or equal to 1"),
        (
            {"lora": {"quantization": "3bit"}},
            "lora.quantization: Input should be 'none', '4bit' or '8bit'",
        ),
        (
            {"training": {"maxSteps": 3, "epochs": 1}},
            "set training.maxSteps or training.epochs, not both",
        ),
        ({"dataset": {"format": "jsonl"}}, "set dataset.uri or dataset.task"),
        (
            {"output": {"uri": "/x", "adapterName": "Bad_Name"}},
            "output.adapterName: String should match",
        ),
        ({"evaluation": {"metric": "bleu"}}, "evaluation.metric: Input should be 'accuracy'"),
        ({"colour": "blue"}, "colour: unknown field"),
    ],
)
def test_invalid_specs_name_the_field(patch: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_job_document({**SPEC, **patch})


def test_manifest_errors_carry_the_spec_prefix() -> None:
    bad = {**MANIFEST, "spec": {**SPEC, "training": {"maxStep": 1}}}
    with pytest.raises(SpecError, match=r"spec\.training\.maxStep: unknown field"):
        parse_job_document(bad)
    with pytest.raises(SpecError, match="kind: Input should be 'FineTuneJob'"):
        parse_job_document({**MANIFEST, "kind": "Job"})


def test_json_schema_is_generated_with_descriptions_and_bounds() -> None:
    schema = FineTuneJobSpec.model_json_schema()
    training = schema["$defs"]["TrainingSpec"]["properties"]
    assert training["maxSeqLength"]["minimum"] == 8
    assert "description" in training["completionOnlyLoss"]
    assert schema["$defs"]["LoraSpec"]["properties"]["quantization"]["enum"] == [
        "none",
        "4bit",
        "8bit",
    ]
    assert set(schema["required"]) == {"baseModel", "dataset", "output"}


def test_overrides_apply_to_manifest_spec_and_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(MANIFEST))
    overrides = [
        ("training.maxSteps", 3),
        parse_assignment("training.warmupRatio=0.2"),
        parse_assignment("lora.targetModules=[q_proj, v_proj]"),
        ("output.uri", "/tmp/elsewhere"),
    ]
    name, spec = build_spec(read_document(path), overrides)
    assert name == "sentiment-a1"
    assert spec.training.max_steps == 3 and spec.training.warmup_ratio == 0.2
    assert spec.lora.target_modules == ["q_proj", "v_proj"]
    assert spec.output.uri == "/tmp/elsewhere"
    with pytest.raises(SpecError, match=r"training\.batchSize: Input should be a valid integer"):
        build_spec(read_document(path), [parse_assignment("training.batchSize=many")])


@pytest.mark.parametrize("text", ["noequals", "=3"])
def test_bad_assignments(text: str) -> None:
    with pytest.raises(SpecError, match=r"write FIELD\.PATH=VALUE"):
        parse_assignment(text)


def test_job_file_problems(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the job file"):
        read_document(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="holds a mapping"):
        read_document(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("a: [1,\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        read_document(tmp_path / "broken.yaml")


def test_adapter_name_defaults() -> None:
    spec = FineTuneJobSpec.model_validate(SPEC)
    assert adapter_name(spec, None) == "a1"
    assert adapter_name(spec, "job-x") == "job-x"
    spec.output.adapter_name = "named"
    assert adapter_name(spec, "job-x") == "named"


def test_progress_and_result_lines_are_compact_camel_case() -> None:
    line = TrainingProgress(
        step=3, total_steps=10, epoch=0.5, loss=1.25, tokens_per_second=99.0
    ).to_line()
    assert json.loads(line) == {
        "event": "progress",
        "phase": "training",
        "step": 3,
        "totalSteps": 10,
        "epoch": 0.5,
        "loss": 1.25,
        "tokensPerSecond": 99.0,
    }
    result = TrainingResult(
        adapter_uri="s3://b/" + "x" * 5000, sha256="0" * 64, size_bytes=1, steps=1
    )
    assert len(result_text(result).encode()) > 4096  # nothing left to drop: still valid JSON
    short = TrainingResult(adapter_uri="/a", sha256="0" * 64, size_bytes=1, steps=1)
    assert json.loads(result_text(short))["adapterUri"] == "/a"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU-only refusal")
def test_qlora_on_cpu_fails_fast_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from loraland.cli import main

    code = main(
        [
            "finetune",
            "--task",
            "sentiment",
            "-o",
            str(tmp_path / "o"),
            "--set",
            "lora.quantization=4bit",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "lora.quantization: 4bit (QLoRA) needs a CUDA GPU" in err
    assert not (tmp_path / "o").exists()


def test_cli_reports_spec_errors_as_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from loraland.cli import main

    code = main(
        ["finetune", "--task", "sentiment", "-o", str(tmp_path), "--set", "training.maxStep=3"]
    )
    assert code == 2
    assert "training.maxStep: unknown field" in capsys.readouterr().err


def test_failures_are_written_to_the_result_file(tmp_path: Path) -> None:
    from loraland.api.progress import TrainingFailure
    from loraland.cli import main

    result = tmp_path / "termination-log"
    args = [
        "finetune",
        "--task",
        "nosuchtask",
        "-o",
        str(tmp_path / "o"),
        "--result-file",
        str(result),
    ]
    assert main(args) == 2
    failure = TrainingFailure.model_validate_json(result.read_text())
    # Refused by the same validation as the operator's webhook, before any data is read.
    assert failure.reason == "SpecError"
    assert "spec.dataset.task: unknown task 'nosuchtask'" in failure.message
    assert main([*args[:2], "sentiment", *args[3:], "--set", "lora.rank=-1"]) == 2
    failure = TrainingFailure.model_validate_json(result.read_text())
    assert failure.reason == "SpecError" and "lora.rank" in failure.message
