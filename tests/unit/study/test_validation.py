"""FineTuneStudy through the shared validator: the study's own rules, then every cell as
the FineTuneJob validator sees it, named at the study field the cell's field came from."""

from __future__ import annotations

from loraland.controller.admission import kinds
from loraland.controller.config import OperatorConfig
from loraland.validation import FINETUNESTUDY, VALIDATORS, Meta

from .conftest import study_doc


def test_a_valid_study_has_no_problems() -> None:
    checked = FINETUNESTUDY(study_doc(), Meta(name="lab"))
    assert checked.ok, checked.message
    assert checked.spec is not None and len(checked.spec.tasks) == 2


def test_a_cell_problem_is_named_at_the_study_field_with_its_run() -> None:
    doc = study_doc(tasks=[{"name": "nope", "task": "no-such-task"}])
    doc["baseModels"][1]["uri"] = "hf://"
    checked = FINETUNESTUDY(doc, Meta(name="lab"))
    paths = {p.path for p in checked.problems}
    assert "spec.tasks[0].task" in paths
    assert "spec.baseModels[1].uri" in paths
    task_problem = next(p for p in checked.problems if p.path == "spec.tasks[0].task")
    assert "unknown task 'no-such-task'" in task_problem.reason
    assert "(run lab-" in task_problem.reason


def test_cross_field_rules_come_before_the_cells() -> None:
    doc = study_doc(references=[{"name": "gpt-4", "scores": {"absent": 0.9}}])
    checked = FINETUNESTUDY(doc, Meta(name="lab"))
    assert [p.path for p in checked.problems] == ["spec.references[0].scores"]


def test_the_webhook_and_the_reconcilers_validate_studies() -> None:
    served = kinds(OperatorConfig())
    assert served["FineTuneStudy"].plural == "finetunestudies"
    assert served["FineTuneStudy"].validator is VALIDATORS["FineTuneStudy"]
