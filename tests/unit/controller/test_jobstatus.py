"""Phase and conditions from Job + pods, through the transition table."""

from __future__ import annotations

from typing import Any

from loraland.api.status import FineTuneJobPhase as P
from loraland.api.status import FineTuneJobStatus, ProgressStatus
from loraland.controller.jobstatus import next_status, observe, result_from_pods

NOW = "2026-01-01T00:00:00Z"


def job(*conditions: tuple[str, str, str], **status: Any) -> dict[str, Any]:
    conds = [
        {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": NOW}
        for t, r, m in conditions
    ]
    return {"metadata": {"name": "j"}, "status": {"startTime": NOW, "conditions": conds, **status}}


def pod(name: str, phase: str, created: str = NOW, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "status": {"phase": phase, **status},
    }


def terminated(container: str, code: int, reason: str, message: str = "") -> dict[str, Any]:
    state = {"exitCode": code, "reason": reason}
    if message:
        state["message"] = message
    return {"name": container, "state": {"terminated": state}}


def test_no_job_yet_is_pending() -> None:
    assert observe(None, [], None).phase is P.PENDING


def test_unschedulable_pod_says_why() -> None:
    p = pod(
        "a",
        "Pending",
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
            }
        ],
    )
    obs = observe(job(active=1), [p], None)
    assert obs.phase is P.PENDING
    assert "Insufficient nvidia.com/gpu" in obs.message


def test_running_and_evaluating() -> None:
    running = [pod("a", "Running")]
    assert observe(job(active=1, ready=1), running, "training").phase is P.RUNNING
    assert observe(job(active=1, ready=1), running, "evaluating").phase is P.EVALUATING


def test_a_retry_says_why_the_pod_before_it_failed() -> None:
    crashed = pod("a", "Failed", containerStatuses=[terminated("trainer", 137, "OOMKilled")])
    retry = pod("b", "Running", created="2026-01-01T00:01:00Z")
    obs = observe(job(active=1, ready=1, failed=1), [crashed, retry], "training")
    assert obs.phase is P.RUNNING
    assert obs.message == (
        "training (after 1 failed pod(s); last: trainer exited with code 137 (OOMKilled))"
    )
    # A deleted pod leaves the count, not its reason.
    obs = observe(job(active=1, ready=1, failed=1), [retry], "training")
    assert obs.message == "training (after 1 failed pod(s))"


def test_complete_job_succeeds() -> None:
    obs = observe(job(("Complete", "CompletionsReached", ""), completionTime=NOW), [], None)
    assert obs.phase is P.SUCCEEDED and obs.completion_time == NOW


def test_failed_job_carries_the_trainers_reason() -> None:
    failed = pod(
        "b",
        "Failed",
        created="2026-01-01T00:01:00Z",
        containerStatuses=[
            terminated("trainer", 2, "Error", "error: dataset: no column 'text' in data.jsonl")
        ],
    )
    older = pod("a", "Failed", containerStatuses=[terminated("trainer", 137, "OOMKilled")])
    obs = observe(
        job(("Failed", "PodFailurePolicy", "Container trainer exited with 2")),
        [older, failed],
        None,
    )
    assert obs.phase is P.FAILED
    assert obs.reason == "PodFailurePolicy"
    assert "trainer exited with code 2 (Error): error: dataset: no column 'text'" in obs.message


def test_failed_job_without_pod_details_uses_the_job_condition() -> None:
    obs = observe(
        job(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")),
        [],
        None,
    )
    assert obs.message == "BackoffLimitExceeded: Job has reached the specified backoff limit"


def test_transition_table_refuses_going_back() -> None:
    done = FineTuneJobStatus(phase=P.SUCCEEDED)
    stale = observe(job(active=1, ready=1), [pod("a", "Running")], None)
    new = next_status(
        done, stale, generation=1, job_name="j", adapter_name="x", fallback_result=None, now=NOW
    )
    assert new.phase is P.SUCCEEDED


def test_conditions_follow_the_phase_and_keep_transition_times() -> None:
    start = FineTuneJobStatus()
    running = next_status(
        start,
        observe(job(active=1, ready=1), [pod("a", "Running")], None),
        generation=2,
        job_name="j",
        adapter_name="x",
        fallback_result=None,
        now=NOW,
    )
    conds = {c.type: c for c in running.conditions}
    assert conds["Running"].status == "True" and conds["Running"].observed_generation == 2
    assert conds["Complete"].status == "False" and conds["Failed"].status == "False"
    later = next_status(
        running,
        observe(job(active=1, ready=1), [pod("a", "Running")], "training"),
        generation=2,
        job_name="j",
        adapter_name="x",
        fallback_result=None,
        now="2026-01-01T01:00:00Z",
    )
    assert {c.type: c for c in later.conditions}["Running"].last_transition_time == NOW


def test_result_from_termination_message_when_the_relay_could_not_post() -> None:
    line = '{"event":"result","adapterUri":"pvc://a/b","sha256":"ff","sizeBytes":10,"steps":3}'
    p = pod(
        "a",
        "Succeeded",
        initContainerStatuses=[terminated("progress-relay", 0, "Completed", line)],
    )
    result = result_from_pods([p])
    assert result is not None and result.adapter_uri == "pvc://a/b"
    status = next_status(
        FineTuneJobStatus(phase=P.RUNNING, progress=ProgressStatus(step=3, total_steps=3)),
        observe(job(("Complete", "CompletionsReached", "")), [p], None),
        generation=1,
        job_name="j",
        adapter_name="sent",
        fallback_result=result,
        now=NOW,
    )
    assert status.adapter is not None and status.adapter.name == "sent"
    assert status.adapter.sha256 == "ff"
