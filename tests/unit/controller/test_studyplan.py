"""FineTuneStudy -> FineTuneJobs, schedule, status, results ConfigMap, winners (as dicts)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from loraland.api.study import FineTuneStudySpec
from loraland.api.studystatus import FineTuneStudyStatus, RunPhase, RunRow, StudyPhase
from loraland.controller.errors import SpecRejected
from loraland.controller.podspec import Owner
from loraland.controller.studies import validate
from loraland.controller.studyplan import (
    build_finetunejob,
    build_results_configmap,
    build_winners_deployment,
    deploy_plan,
    next_status,
    rejected_status,
    retries_due,
    run_row,
    schedule,
    status_patch,
    with_deploy,
)
from loraland.study.matrix import empty_table, expand

NOW = "2026-12-01T00:00:00Z"
OWNER = Owner("loraland.dev/v1alpha1", "FineTuneStudy", "lab", "team-a", "uid-s", 2)


def spec_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "baseModels": [
            {"name": "big", "uri": "hf://org/big", "labels": {"size": "7b"}},
            {"name": "small", "uri": "hf://org/small", "revision": "v2"},
        ],
        "tasks": [{"name": "sst2", "task": "sst2"}, {"name": "boolq", "task": "boolq"}],
        "template": {"training": {"maxSteps": 5}, "output": {"uri": "s3://b/lab"}},
        "maxParallel": 2,
        "deploy": {"adapterDeployment": "winners", "minGain": 0.1},
    }
    doc.update(overrides)
    return doc


@pytest.fixture
def spec() -> FineTuneStudySpec:
    return FineTuneStudySpec.model_validate(spec_doc())


def job(
    name: str, phase: str | None, scores: dict[str, Any] | None = None, **meta: Any
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if phase:
        status["phase"] = phase
    if scores:
        status["scores"] = scores
        status["adapter"] = {"uri": f"s3://b/lab/{name}", "sha256": "0", "sizeBytes": 1}
    if phase == "Failed":
        status["message"] = "BackoffLimitExceeded: trainer exited with code 1"
    return {
        "metadata": {
            "name": name,
            "annotations": meta.get("annotations", {}),
            **meta.get("extra", {}),
        },
        "status": status,
    }


def test_finetunejob_manifest(spec: FineTuneStudySpec) -> None:
    run = expand("lab", spec)[3]
    manifest = build_finetunejob(OWNER, run, attempt=2)
    assert manifest["apiVersion"] == "loraland.dev/v1alpha1" and manifest["kind"] == "FineTuneJob"
    meta = manifest["metadata"]
    assert meta["name"] == "lab-small-boolq" and meta["namespace"] == "team-a"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "loraland.dev/v1alpha1",
            "kind": "FineTuneStudy",
            "name": "lab",
            "uid": "uid-s",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert meta["annotations"] == {"loraland.dev/attempt": "2"}
    assert meta["labels"]["loraland.dev/study"] == "lab"
    assert meta["labels"]["loraland.dev/study-base"] == "small"
    assert meta["labels"]["loraland.dev/study-task"] == "boolq"
    assert "loraland.dev/study-variant" not in meta["labels"]
    assert manifest["spec"]["baseModel"] == {"uri": "hf://org/small", "revision": "v2"}
    assert manifest["spec"]["output"] == {
        "uri": "s3://b/lab/lab-small-boolq",
        "adapterName": "lab-small-boolq",
    }
    assert manifest["spec"]["dataset"]["task"] == "boolq"


def test_schedule_keeps_max_parallel_active_in_matrix_order(spec: FineTuneStudySpec) -> None:
    runs = expand("lab", spec)
    rows = {r.name: run_row(r, None, 0) for r in runs}
    assert [r.name for r in schedule(runs, rows, 2)] == ["lab-big-sst2", "lab-big-boolq"]
    rows["lab-big-sst2"] = run_row(runs[0], job("lab-big-sst2", "Running"), 0)
    rows["lab-big-boolq"] = run_row(runs[1], job("lab-big-boolq", None), 0)
    assert rows["lab-big-boolq"].phase is RunPhase.PENDING
    assert schedule(runs, rows, 2) == []
    assert [r.name for r in schedule(runs, rows, 3)] == ["lab-small-sst2"]
    rows["lab-big-sst2"] = run_row(runs[0], job("lab-big-sst2", "Succeeded"), 0)
    assert [r.name for r in schedule(runs, rows, 2)] == ["lab-small-sst2"]
    # Lowered below the active count: nothing new, nothing stopped.
    assert schedule(runs, rows, 1) == []


def test_failed_runs_are_retried_until_the_count_is_spent(spec: FineTuneStudySpec) -> None:
    run = expand("lab", spec)[0]
    first = run_row(run, job(run.name, "Failed", annotations={"loraland.dev/attempt": "1"}), 0)
    assert first.attempts == 1 and "BackoffLimitExceeded" in (first.message or "")
    assert retries_due([first], retries=1) == [first]
    second = run_row(run, job(run.name, "Failed", annotations={"loraland.dev/attempt": "2"}), 1)
    assert retries_due([second], retries=1) == []
    # A job being deleted (the failed attempt on its way out) reads as queued.
    going = run_row(run, job(run.name, "Failed", extra={"deletionTimestamp": NOW}), 1)
    assert going.phase is RunPhase.QUEUED and going.attempts == 1


def scored_rows(spec: FineTuneStudySpec) -> list[RunRow]:
    runs = expand("lab", spec)
    scores = {
        "lab-big-sst2": (0.5, 0.9),
        "lab-big-boolq": (0.6, 0.65),
        "lab-small-sst2": (0.4, 0.7),
    }
    rows = []
    for r in runs:
        if r.name in scores:
            base, adapter = scores[r.name]
            body = job(
                r.name,
                "Succeeded",
                {"metric": "accuracy", "base": base, "adapter": adapter, "samples": 10},
            )
        else:
            body = job(r.name, "Failed")
        rows.append(run_row(r, body, 0))
    return rows


def test_status_counts_leaderboard_and_conditions(spec: FineTuneStudySpec) -> None:
    table = empty_table("lab", spec)
    table.runs = scored_rows(spec)
    status = next_status(
        FineTuneStudyStatus(), table, generation=2, attempts={"lab-small-boolq": 2}, now=NOW
    )
    assert status.phase is StudyPhase.COMPLETED
    assert status.message == "3 of 4 runs succeeded, 1 failed"
    assert status.progress == "4/4" and status.total == 4
    assert (status.counts.succeeded, status.counts.failed) == (3, 1)
    assert status.failed_runs == ["lab-small-boolq"] and status.retries == 1
    assert status.best_base == "big"
    assert [(b.name, b.mean_score) for b in status.bases] == [("big", 0.775), ("small", 0.7)]
    assert status.tasks[0].best_run == "lab-big-sst2"
    conditions = {c.type: (c.status, c.reason) for c in status.conditions}
    assert conditions == {
        "Complete": ("True", "AllRunsFinished"),
        "RunsFailed": ("True", "RunFailed"),
        "SpecValid": ("True", "Accepted"),
    }
    wire = status.to_wire()
    assert wire["resultsConfigMap"] == "lab-results"
    assert wire["counts"]["succeeded"] == 3


def test_running_study_and_phase_table(spec: FineTuneStudySpec) -> None:
    runs = expand("lab", spec)
    table = empty_table("lab", spec)
    table.runs = [run_row(r, None, 0) for r in runs]
    assert (
        next_status(FineTuneStudyStatus(), table, generation=1, attempts={}, now=NOW).phase
        is StudyPhase.PENDING
    )
    table.runs[0] = run_row(runs[0], job(runs[0].name, "Running"), 0)
    running = next_status(FineTuneStudyStatus(), table, generation=1, attempts={}, now=NOW)
    assert running.phase is StudyPhase.RUNNING and running.progress == "0/4"
    # A completed study does not go back to Pending.
    done = FineTuneStudyStatus(phase=StudyPhase.COMPLETED)
    table.runs = [run_row(r, None, 0) for r in runs]
    assert (
        next_status(done, table, generation=1, attempts={}, now=NOW).phase is StudyPhase.COMPLETED
    )


def test_every_run_failed_fails_the_study(spec: FineTuneStudySpec) -> None:
    table = empty_table("lab", spec)
    table.runs = [run_row(r, job(r.name, "Failed"), 0) for r in expand("lab", spec)]
    status = next_status(FineTuneStudyStatus(), table, generation=1, attempts={}, now=NOW)
    assert status.phase is StudyPhase.FAILED and status.message == "all 4 runs failed"


def test_results_configmap_holds_json_and_markdown(spec: FineTuneStudySpec) -> None:
    table = empty_table("lab", spec)
    table.runs = scored_rows(spec)
    cm = build_results_configmap(OWNER, table)
    assert cm["metadata"]["name"] == "lab-results"
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "uid-s"
    data = json.loads(cm["data"]["results.json"])
    assert data["study"] == "lab" and len(data["runs"]) == 4
    assert data["runs"][0]["adapterScore"] == 0.9
    assert (
        "| lab-big-sst2 | big | sst2 | Succeeded | accuracy | 50.0 | 90.0 | +40.0 | 1 |"
        in cm["data"]["results.md"]
    )


def test_winners_above_min_gain_go_to_an_owned_adapterdeployment(spec: FineTuneStudySpec) -> None:
    table = empty_table("lab", spec)
    table.runs = scored_rows(spec)
    assert spec.deploy is not None
    plan = deploy_plan(table, spec.deploy)
    assert plan.base == "big"
    manifest = build_winners_deployment(OWNER, spec, plan)
    assert manifest is not None
    assert manifest["kind"] == "AdapterDeployment" and manifest["metadata"]["name"] == "winners"
    assert manifest["metadata"]["ownerReferences"][0]["kind"] == "FineTuneStudy"
    assert manifest["spec"]["baseModel"] == {"uri": "hf://org/big"}
    # boolq gains only 0.05 < minGain 0.1: not deployed.
    assert manifest["spec"]["adapters"] == [{"name": "sst2", "fromFineTuneJob": "lab-big-sst2"}]
    status = with_deploy(
        FineTuneStudyStatus(), plan, spec.deploy, applied=True, generation=2, now=NOW
    )
    deployed = {c.type: c for c in status.conditions}["Deployed"]
    assert (
        deployed.status == "True"
        and "boolq: lab-big-boolq gains +0.050 < minGain 0.100" in deployed.message
    )
    assert status.deployed_to == "winners" and status.deployed_adapters == ["sst2"]
    # A chosen base with no winners deploys nothing and says why.
    small = spec.deploy.model_copy(update={"base_model": "small", "min_gain": 0.5})
    plan = deploy_plan(table, small)
    assert build_winners_deployment(OWNER, spec.model_copy(update={"deploy": small}), plan) is None
    status = with_deploy(FineTuneStudyStatus(), plan, small, applied=False, generation=2, now=NOW)
    assert {c.type: c.reason for c in status.conditions}["Deployed"] == "NoWinners"


def test_invalid_spec_is_refused_naming_the_field() -> None:
    with pytest.raises(
        SpecRejected, match=r"spec.maxParallel: Input should be greater than or equal to 1"
    ):
        validate("lab", spec_doc(maxParallel=0))
    with pytest.raises(
        SpecRejected, match=r"^spec.template.output.uri: cannot write an adapter to hf://"
    ):
        validate("lab", spec_doc(template={"output": {"uri": "hf://org"}}))
    status = rejected_status(
        FineTuneStudyStatus(), "spec.maxParallel: too small", generation=3, now=NOW
    )
    assert (
        status.phase is StudyPhase.FAILED
        and status.message == "invalid spec: spec.maxParallel: too small"
    )
    patch = status_patch(FineTuneStudyStatus(), status)
    assert patch["phase"] == "Failed" and patch["conditions"][0]["reason"] == "InvalidSpec"
