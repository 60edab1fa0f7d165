"""Per-adapter state across replicas, from the servers' real admin JSON shape."""

from __future__ import annotations

from loraland.api.status import AdapterDeploymentPhase
from loraland.controller.adapterstate import (
    PodReport,
    aggregate,
    deployment_phase,
    parse_builtin_adapters,
)
from loraland.serving.wire.admin import AdapterList, AdapterOut


def admin_json(*states: tuple[str, str, str]) -> object:
    """What ``loraland serve`` answers at GET /admin/adapters (its own response model)."""
    body = AdapterList(
        adapters=[
            AdapterOut(
                name=n,
                uri=f"pvc://a/{n}",
                state=s,
                message=m,
                tier=None,
                origin="file",
                active_requests=0,
            )  # type: ignore[arg-type]
            for n, s, m in states
        ]
    )
    return body.model_dump(mode="json")


DESIRED = {"a": "pvc://a/a", "b": "pvc://a/b"}


def test_loaded_only_when_every_ready_replica_has_it() -> None:
    p1 = PodReport(
        "p1", parse_builtin_adapters(admin_json(("a", "Loaded", ""), ("b", "Loaded", "")))
    )
    p2 = PodReport(
        "p2",
        parse_builtin_adapters(admin_json(("a", "Loaded", ""), ("b", "Pending", "downloading"))),
    )
    states = {s.name: s for s in aggregate(DESIRED, {}, [p1, p2])}
    assert states["a"].state == "Loaded" and states["a"].loaded_replicas == 2
    assert states["b"].state == "Pending"
    assert states["b"].message == "loaded on 1/2 ready pods; loading on p2: downloading"


def test_failed_on_any_replica_is_failed_with_its_message() -> None:
    p1 = PodReport(
        "p1", parse_builtin_adapters(admin_json(("a", "Loaded", ""), ("b", "Loaded", "")))
    )
    p2 = PodReport(
        "p2",
        parse_builtin_adapters(
            admin_json(("a", "Loaded", ""), ("b", "Failed", "rank 128 exceeds max_lora_rank 64"))
        ),
    )
    states = {s.name: s for s in aggregate(DESIRED, {}, [p1, p2])}
    assert states["b"].state == "Failed"
    assert states["b"].message == "p2: rank 128 exceeds max_lora_rank 64"


def test_unreachable_pods_leave_adapters_pending_and_say_so() -> None:
    ok = PodReport("p1", parse_builtin_adapters(admin_json(("a", "Loaded", ""))))
    down = PodReport("p2", error="GET http://10.0.0.2:8080/admin/adapters: timed out")
    states = {s.name: s for s in aggregate(DESIRED, {}, [ok, down])}
    assert states["a"].state == "Pending"
    assert (
        "p2 unreachable: GET http://10.0.0.2:8080/admin/adapters: timed out" in states["a"].message
    )
    assert "not yet listed by p1" in states["b"].message


def test_waiting_and_refused() -> None:
    states = aggregate(
        {"a": "hf://o/a"},
        {"b": "waiting for FineTuneJob b (Running)"},
        [],
        refused={"c": "cannot serve builtin://x on runtime vllm"},
    )
    assert [(s.name, s.state) for s in states] == [
        ("a", "Pending"),
        ("b", "Pending"),
        ("c", "Failed"),
    ]
    assert states[1].message == "waiting for FineTuneJob b (Running)"
    assert states[2].message.startswith("cannot serve builtin://x")
    assert aggregate({"a": "x"}, {}, [])[0].message == "no ready server pod"


def test_deployment_phase() -> None:
    Phase = AdapterDeploymentPhase
    loaded = aggregate(
        {"a": "x"}, {}, [PodReport("p", parse_builtin_adapters(admin_json(("a", "Loaded", ""))))]
    )
    assert (
        deployment_phase(spec_replicas=1, ready=0, updated=0, exists=False, adapters=[])[0]
        is Phase.PENDING
    )
    assert (
        deployment_phase(spec_replicas=2, ready=1, updated=2, exists=True, adapters=loaded)[0]
        is Phase.PROGRESSING
    )
    assert (
        deployment_phase(spec_replicas=1, ready=1, updated=1, exists=True, adapters=loaded)[0]
        is Phase.READY
    )
    failed = aggregate(
        {"a": "x"}, {}, [PodReport("p", parse_builtin_adapters(admin_json(("a", "Failed", "no"))))]
    )
    assert (
        deployment_phase(spec_replicas=1, ready=1, updated=1, exists=True, adapters=failed)[0]
        is Phase.DEGRADED
    )
