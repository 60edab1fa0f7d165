"""A small study spec and a results table shared by the study tests."""

from __future__ import annotations

from typing import Any

import pytest
from loraland.api.study import FineTuneStudySpec
from loraland.api.studystatus import RunPhase, RunRow, StudyTable, TableBase, TableReference


def study_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "baseModels": [
            {"name": "big", "uri": "hf://org/big", "labels": {"size": "7b", "instruct": "false"}},
            {"name": "chat", "uri": "hf://org/chat", "labels": {"size": "7b", "instruct": "true"}},
            {
                "name": "small",
                "uri": "hf://org/small",
                "labels": {"size": "2b", "instruct": "false"},
            },
        ],
        "tasks": [
            {"name": "sst2", "task": "sst2"},
            {"name": "mine", "dataset": {"uri": "pvc://data/mine.jsonl", "maxSamples": 50}},
        ],
        "template": {
            "dataset": {"maxSamples": 100},
            "training": {"maxSteps": 10, "learningRate": 0.001},
            "output": {"uri": "s3://bucket/study/"},
        },
    }
    doc.update(overrides)
    return doc


@pytest.fixture
def spec() -> FineTuneStudySpec:
    return FineTuneStudySpec.model_validate(study_doc())


def row(
    base: str, task: str, adapter: float | None, basescore: float | None = 0.5, **kw: Any
) -> RunRow:
    phase = kw.pop("phase", RunPhase.SUCCEEDED if adapter is not None else RunPhase.FAILED)
    return RunRow(
        name=f"s-{base}-{task}" + (f"-{kw['variant']}" if kw.get("variant") else ""),
        base=base,
        task=task,
        phase=phase,
        metric="accuracy",
        base_score=basescore if adapter is not None else None,
        adapter_score=adapter,
        attempts=1,
        **kw,
    )


@pytest.fixture
def table() -> StudyTable:
    """3 bases x 2 tasks: 'big' best on average; GPT-4 beats every adapter on 'hard'."""
    return StudyTable(
        study="s",
        bases=[
            TableBase(name="big", uri="hf://org/big", labels={"size": "7b", "instruct": "false"}),
            TableBase(name="chat", uri="hf://org/chat", labels={"size": "7b", "instruct": "true"}),
            TableBase(
                name="small", uri="hf://org/small", labels={"size": "2b", "instruct": "false"}
            ),
        ],
        tasks=["easy", "hard"],
        references=[
            TableReference(name="gpt-4", source="paper", scores={"easy": 0.8, "hard": 0.9})
        ],
        runs=[
            row("big", "easy", 0.9, 0.5),
            row("big", "hard", 0.6, 0.58),
            row("chat", "easy", 0.85, 0.7),
            row("chat", "hard", 0.5, 0.2),
            row("small", "easy", 0.7, 0.3),
            row("small", "hard", None),
        ],
    )
