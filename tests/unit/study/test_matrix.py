"""The matrix: one FineTuneJob spec per cell, stable names, variants merged over the template."""

from __future__ import annotations

from loraland.api.study import FineTuneStudySpec, study_problems
from loraland.study.matrix import expand, fit, matrix_problems, run_name

from .conftest import study_doc


def test_every_cell_becomes_a_run_in_base_task_order(spec: FineTuneStudySpec) -> None:
    runs = expand("lab", spec)
    assert [r.name for r in runs] == [
        "lab-big-sst2",
        "lab-big-mine",
        "lab-chat-sst2",
        "lab-chat-mine",
        "lab-small-sst2",
        "lab-small-mine",
    ]
    first = runs[0].spec
    assert first.base_model.uri == "hf://org/big"
    assert first.dataset.task == "sst2" and first.dataset.max_samples == 100
    assert first.output.uri == "s3://bucket/study/lab-big-sst2"
    assert first.output.adapter_name == "lab-big-sst2"
    assert first.training.max_steps == 10 and first.training.learning_rate == 0.001
    # The task's own dataset block wins over the template's defaults.
    mine = runs[1].spec.dataset
    assert mine.uri == "pvc://data/mine.jsonl" and mine.max_samples == 50 and mine.task is None


def test_variants_override_lora_and_training_and_steps_replace_epochs() -> None:
    doc = study_doc(
        variants=[
            {"name": "r4", "lora": {"rank": 4}},
            {"name": "long", "training": {"epochs": 2}, "lora": {"targetModules": ["q_proj"]}},
        ]
    )
    runs = expand("lab", FineTuneStudySpec.model_validate(doc))
    assert len(runs) == 12
    r4, long = runs[0], runs[1]
    assert r4.name == "lab-big-sst2-r4" and long.name == "lab-big-sst2-long"
    assert r4.spec.lora.rank == 4 and r4.spec.training.max_steps == 10
    assert long.spec.lora.rank == 8 and long.spec.lora.target_modules == ["q_proj"]
    assert long.spec.training.epochs == 2 and long.spec.training.max_steps is None
    assert long.spec.training.learning_rate == 0.001


def test_names_are_stable_and_fit_in_63_characters() -> None:
    args = ("a" * 40, "base-model-with-long-name", "task-name", "variant")
    name = run_name(*args)
    assert len(name) == 63 and name == run_name(*args)
    other = run_name("a" * 40, "base-model-with-long-name", "task-name", "variant2")
    assert other != name and len(other) == 63
    assert fit("short") == "short"


def test_problems_name_the_field() -> None:
    assert study_problems(study_doc()) == []
    bad = study_doc(maxParallel=0, references=[{"name": "gpt-4", "scores": {"nope": 0.5}}])
    bad["tasks"].append({"name": "sst2", "task": "sst2"})
    bad["tasks"].append({"name": "empty"})
    bad["baseModels"][0]["rnak"] = 3
    problems = dict(study_problems(bad))
    assert "spec.maxParallel" in problems
    assert problems["spec.baseModels[0].rnak"] == "unknown field"
    semantic = dict(
        study_problems(
            study_doc(
                tasks=[
                    {"name": "sst2", "task": "sst2"},
                    {"name": "sst2", "task": "boolq"},
                    {"name": "empty"},
                ],
                references=[{"name": "gpt-4", "scores": {"nope": 0.5}}],
                deploy={"adapterDeployment": "winners", "baseModel": "nobody"},
            )
        )
    )
    assert "repeated: ['sst2']" in semantic["spec.tasks"]
    assert semantic["spec.tasks[2]"] == "set task or dataset"
    assert "nope" in semantic["spec.references[0].scores"]
    assert "'nobody'" in semantic["spec.deploy.baseModel"]


def test_problems_of_the_template_name_the_template_field() -> None:
    doc = study_doc()
    assert matrix_problems("lab", FineTuneStudySpec.model_validate(doc)) == []
    doc["template"]["evaluation"] = {"maxNewTokens": 9000}
    problems = study_problems(doc)
    assert problems and problems[0][0] == "spec.template.evaluation.maxNewTokens"
