"""The relay's file tailing and the patches it sends."""

from __future__ import annotations

from pathlib import Path

import pytest
from loraland.api.progress import TrainingProgress, TrainingResult
from loraland.controller.errors import SpecRejected
from loraland.controller.finetunejobs import validate_spec, with_adapter
from loraland.controller.relay import ProgressTail, progress_patch, read_result, result_patch


def line(step: int, **extra: object) -> str:
    return TrainingProgress(step=step, total_steps=10, epoch=0.1 * step, **extra).to_line() + "\n"  # type: ignore[arg-type]


def test_tail_reads_only_new_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    tail = ProgressTail(path)
    assert tail.read_latest() is None  # no file yet
    path.write_text(line(1) + line(2) + line(3)[:10])
    got = tail.read_latest()
    assert got is not None and got.step == 2
    assert tail.read_latest() is None  # nothing new; the half line waits
    with path.open("a") as fh:
        fh.write(line(3)[10:] + "not json\n")
    got = tail.read_latest()
    assert got is not None and got.step == 3 and tail.skipped == 1


def test_tail_starts_over_when_the_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(line(1) + line(2) + line(3))
    tail = ProgressTail(path)
    assert tail.read_latest().step == 3  # type: ignore[union-attr]
    path.write_text(line(1))
    assert tail.read_latest().step == 1  # type: ignore[union-attr]


def test_progress_patch_clears_missing_fields() -> None:
    body = progress_patch(TrainingProgress(step=4, total_steps=10, epoch=0.4, loss=1.5), now="t")
    progress = body["status"]["progress"]
    assert progress["summary"] == "4/10" and progress["loss"] == 1.5
    assert progress["etaSeconds"] is None  # a merge patch null removes a stale value


def test_result_patch_and_reading(tmp_path: Path) -> None:
    result = TrainingResult.model_validate_json(
        '{"adapterUri":"pvc://a/x","sha256":"ab","sizeBytes":5,"steps":3,'
        '"scores":{"task":"sentiment","metric":"accuracy","base":0.5,"adapter":0.75,"samples":8}}'
    )
    assert result_patch(result, "x") == {
        "status": {
            "adapter": {"name": "x", "uri": "pvc://a/x", "sha256": "ab", "sizeBytes": 5},
            "scores": {
                "task": "sentiment",
                "metric": "accuracy",
                "base": 0.5,
                "adapter": 0.75,
                "samples": 8,
            },
        }
    }
    path = tmp_path / "r.json"
    path.write_text('{"adapterUri": "pvc://a/x", "sha')  # half-written
    assert read_result(path) is None
    path.write_text(result.to_line())
    assert read_result(path) == result


def test_with_adapter() -> None:
    assert with_adapter([], "a", "u") == [{"name": "a", "uri": "u"}]
    assert with_adapter([{"name": "a", "uri": "u"}], "a", "u") is None
    assert with_adapter(
        [{"name": "a", "fromFineTuneJob": "a"}, {"name": "b", "uri": "v"}], "a", "u"
    ) == [
        {"name": "a", "uri": "u"},
        {"name": "b", "uri": "v"},
    ]


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"output": {"uri": "hf://org/x"}}, "spec.output.uri"),
        ({"baseModel": {"uri": "ftp://x"}}, "spec.baseModel.uri"),
        ({"lora": {"rank": 0}}, "spec.lora.rank"),
        ({"training": {"maxStep": 3}}, "spec.training.maxStep"),
    ],
)
def test_spec_errors_name_the_field(patch: dict, field: str) -> None:  # type: ignore[type-arg]
    raw = {
        "baseModel": {"uri": "builtin://smollm2-135m-instruct"},
        "dataset": {"task": "sentiment"},
        "output": {"uri": "pvc://adapters/x"},
        **patch,
    }
    with pytest.raises(SpecRejected, match=field.replace(".", r"\.")):
        validate_spec(raw)
