"""The task registry: deterministic synthetic tasks and the real LoRA Land task definitions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loraland.api.finetunejob import DatasetSpec
from loraland.data import DataError
from loraland.data.catalog import conll_entities, prepare_boolq, prepare_sst2, prepare_stsb
from loraland.data.loading import load_eval_data, load_training_data
from loraland.data.registry import TASKS, get_task
from loraland.data.synthetic import SYNTHETIC_TASKS, synthetic_rows
from loraland.data.templates import placeholders
from loraland.settings import Settings


def test_registry_has_synthetic_and_real_tasks_of_every_metric() -> None:
    synthetic = {t.name for t in SYNTHETIC_TASKS}
    real = {t.name for t in TASKS.values() if not t.synthetic}
    assert len(synthetic) >= 4 and len(real) >= 5
    assert {"sst2", "boolq", "gsm8k", "conllpp", "viggo"} <= real
    assert {t.metric for t in TASKS.values()} == {
        "accuracy",
        "rouge_l",
        "last_number",
        "regression",
    }
    assert len({t.kind for t in SYNTHETIC_TASKS}) >= 4


@pytest.mark.parametrize("task", list(TASKS.values()), ids=lambda t: t.name)
def test_every_template_uses_only_its_fields(task) -> None:  # type: ignore[no-untyped-def]
    assert set(placeholders(task.prompt_template)) <= set(task.fields)
    assert task.output_field in task.fields


def test_unknown_task_lists_known_ones() -> None:
    with pytest.raises(DataError, match="unknown task 'nope' \\(known: sentiment, intents"):
        get_task("nope")


@pytest.mark.parametrize("task", SYNTHETIC_TASKS, ids=lambda t: t.name)
def test_synthetic_rows_are_deterministic_and_distinct(task) -> None:  # type: ignore[no-untyped-def]
    first = synthetic_rows(task, 300, seed=5, split="train")
    assert first == synthetic_rows(task, 300, seed=5, split="train")
    assert first != synthetic_rows(task, 300, seed=6, split="train")
    inputs = [row[task.fields[0]] for row in first]
    assert len(set(inputs)) == len(inputs) == 300
    if task.labels:
        assert {row["output"] for row in first} == set(task.labels)


def test_synthetic_train_never_contains_eval_inputs(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path)
    bundle = load_training_data(DatasetSpec(task="sentiment", max_samples=500), 3, settings)
    assert len(bundle.train) == 500 and len(bundle.eval) == 200
    assert not {e.prompt for e in bundle.train} & {e.prompt for e in bundle.eval}
    # The eval set does not depend on the training seed, and matches `loraland eval`'s.
    other = load_training_data(DatasetSpec(task="sentiment", max_samples=10), 4, settings)
    assert other.eval == bundle.eval == load_eval_data("sentiment", settings).eval


def test_entities_outputs_are_json() -> None:
    for row in synthetic_rows(get_task("entities"), 20, seed=1, split="train"):
        value = json.loads(row["output"])
        assert set(value) == {"person", "location", "organization"}
        for names in value.values():
            assert all(name in row["sentence"] for name in names)


def test_arithmetic_answers_are_right() -> None:
    for row in synthetic_rows(get_task("arithmetic"), 50, seed=1, split="train"):
        left, result = row["output"].split("=")
        a, b, c = (int(x) for x in left.replace("-", "+").split("+"))
        assert a + b - c == int(result) >= 1


@pytest.mark.parametrize(
    ("row", "output"),
    [
        ({"sentence": "great film", "label": 1}, "positive"),
        ({"sentence": "dull", "label": 0}, "negative"),
        ({"sentence": "dull", "label": "negative"}, "negative"),
        ({"sentence": "great", "label": "1"}, "positive"),
    ],
)
def test_sst2_labels(row: dict[str, object], output: str) -> None:
    assert prepare_sst2(row)["output"] == output


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"sentence": "x", "label": 7}, "field 'label' has 7"),
        ({"label": 1}, "missing field 'sentence'"),
    ],
)
def test_sst2_bad_rows(row: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        prepare_sst2(row)


def test_boolq_and_stsb_prepare() -> None:
    row = {"question": "is it", "passage": "p", "answer": True}
    assert prepare_boolq(row)["output"] == "true"
    assert prepare_stsb({"sentence1": "a", "sentence2": "b", "label": 3.2})["output"] == "3.2"


def test_conll_bio_tags_become_entity_lists() -> None:
    tokens = [
        "EU",
        "rejects",
        "German",
        "call",
        "to",
        "boycott",
        "British",
        "lamb",
        "Peter",
        "Blackburn",
    ]
    tags = [3, 0, 7, 0, 0, 0, 7, 0, 1, 2]
    assert conll_entities(tokens, tags) == {
        "person": ["Peter Blackburn"],
        "organization": ["EU"],
        "location": [],
        "miscellaneous": ["German", "British"],
    }
    # Two adjacent B- tags are two entities; tags may also be strings.
    assert conll_entities(["A", "B"], ["B-LOC", "B-LOC"])["location"] == ["A", "B"]


def test_real_task_reads_local_files_with_hub_columns(tmp_path: Path) -> None:
    """A user without network points a hub task at a directory of its splits."""
    root = tmp_path / "sst2"
    root.mkdir()
    rows = [{"sentence": f"s{i}", "label": i % 2} for i in range(6)]
    (root / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (root / "validation.jsonl").write_text(
        json.dumps({"sentence": "v", "label": 1})
        + "\n"
        + json.dumps({"sentence": "w", "label": 9})
        + "\n"
    )
    settings = Settings(cache_dir=tmp_path / "cache")
    bundle = load_training_data(DatasetSpec(task="sst2", uri=str(root)), 1, settings)
    assert len(bundle.train) == 6
    assert [(e.prompt.splitlines()[0], e.completion) for e in bundle.eval] == [
        ("Sentence: v", "positive")
    ]
    assert [b.location for b in bundle.bad_rows] == ["validation.jsonl:2"]
    evaluation = load_eval_data("sst2", settings, data_uri=str(root))
    assert [e.completion for e in evaluation.eval] == ["positive"]
