"""Phase tables, conditions, progress formatting."""

from __future__ import annotations

import pytest
from loraland.api.progress import TrainingProgress
from loraland.api.status import (
    ADAPTERDEPLOYMENT_TRANSITIONS,
    FINETUNEJOB_TRANSITIONS,
    AdapterDeploymentPhase,
    FineTuneJobPhase,
    format_duration,
    next_phase,
    progress_status,
    set_condition,
)

P = FineTuneJobPhase


def test_tables_cover_every_phase() -> None:
    assert set(FINETUNEJOB_TRANSITIONS) == set(FineTuneJobPhase)
    assert set(ADAPTERDEPLOYMENT_TRANSITIONS) == set(AdapterDeploymentPhase)


@pytest.mark.parametrize(
    ("current", "proposed", "expected"),
    [
        (None, P.RUNNING, P.RUNNING),
        (P.PENDING, P.SUCCEEDED, P.SUCCEEDED),
        (P.RUNNING, P.PENDING, P.RUNNING),
        (P.SUCCEEDED, P.RUNNING, P.SUCCEEDED),
        (P.SUCCEEDED, P.FAILED, P.SUCCEEDED),
        (P.FAILED, P.RUNNING, P.FAILED),
        (P.FAILED, P.PENDING, P.PENDING),
        (P.EVALUATING, P.RUNNING, P.RUNNING),
    ],
)
def test_next_phase(current: P | None, proposed: P, expected: P) -> None:
    assert next_phase(FINETUNEJOB_TRANSITIONS, current, proposed) is expected


def test_set_condition_changes_time_only_on_flip() -> None:
    c1 = set_condition([], "Ready", "False", "A", "", generation=1, now="t1")
    c2 = set_condition(c1, "Ready", "False", "B", "msg", generation=2, now="t2")
    assert c2[0].last_transition_time == "t1" and c2[0].reason == "B"
    c3 = set_condition(c2, "Ready", "True", "C", "", generation=2, now="t3")
    assert c3[0].last_transition_time == "t3"
    assert len(set_condition(c3, "Other", "True", "X", "", generation=2, now="t4")) == 2


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (42.4, "42s"), (120, "2m"), (3723, "1h2m3s"), (3600, "1h")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_progress_status_for_kubectl_columns() -> None:
    line = TrainingProgress(
        step=37, total_steps=100, epoch=0.4, loss=1.234567, tokens_per_second=812.34, eta_seconds=95
    )
    status = progress_status(line, now="t")
    assert status.summary == "37/100" and status.percent == 37
    assert status.loss == 1.2346 and status.tokens_per_second == 812.3 and status.eta == "1m35s"
    assert status.resumed_from_step is None


def test_progress_status_shows_the_step_a_retried_pod_resumed_from() -> None:
    line = TrainingProgress(step=12, total_steps=24, epoch=0.5, resumed_from_step=8)
    wire = progress_status(line, now="t").model_dump(mode="json", by_alias=True)
    assert wire["resumedFromStep"] == 8 and wire["summary"] == "12/24"


def test_min_gain_refuses_an_adapter_that_does_not_beat_its_base_enough() -> None:
    from loraland.api.status import ScoresStatus
    from loraland.controller.finetunejobs import gain_refusal

    scores = ScoresStatus(metric="accuracy", base=0.60, adapter=0.63, samples=100)
    assert gain_refusal(scores, None) is None
    assert gain_refusal(scores, 0.03) is None
    reason, message = gain_refusal(scores, 0.05) or ("", "")
    assert reason == "BelowMinGain"
    assert "a gain of +0.030 < deployTo.minGain 0.050" in message
    no_base = ScoresStatus(metric="accuracy", adapter=0.9, samples=10)
    assert (gain_refusal(no_base, 0.0) or ("",))[0] == "NoBaseScore"
    assert (gain_refusal(None, 0.0) or ("",))[0] == "NoBaseScore"
