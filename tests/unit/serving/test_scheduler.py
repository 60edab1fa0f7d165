"""The pure scheduler: admission under batch size, token budgets and adapter slots."""

from __future__ import annotations

from loraland.serving.engine.scheduler import (
    Budget,
    PrefillPolicy,
    Running,
    Waiting,
    plan_step,
    prefill_due,
    step_prefill_tokens,
)

BUDGET = Budget(
    max_batch_size=4, max_batch_total_tokens=400, max_batch_prefill_tokens=120, adapter_slots=2
)


def waiting(i: int, prompt: int = 10, new: int = 10, adapter: str | None = None) -> Waiting:
    return Waiting(f"w{i}", prompt, new, adapter)


def test_admits_in_arrival_order_up_to_batch_size() -> None:
    plan = plan_step([waiting(i) for i in range(6)], [], BUDGET)
    assert plan.admit == ("w0", "w1", "w2", "w3")
    assert plan.blocked_by == "batch_size"


def test_running_rows_count_against_the_batch() -> None:
    running = [Running("r0", 20), Running("r1", 20), Running("r2", 20)]
    assert plan_step([waiting(0), waiting(1)], running, BUDGET).admit == ("w0",)


def test_padded_token_budget_uses_the_longest_reservation() -> None:
    # Two rows of 100 + one of 150 -> 3 x 150 = 450 > 400: the long one waits.
    running = [Running("r0", 100), Running("r1", 100)]
    plan = plan_step([waiting(0, prompt=50, new=100), waiting(1)], running, BUDGET)
    assert plan.admit == ()
    assert plan.blocked_by == "batch_tokens"


def test_budget_stops_admission_so_big_requests_are_not_starved() -> None:
    running = [Running("r0", 100), Running("r1", 100)]
    plan = plan_step([waiting(0, prompt=50, new=100), waiting(1, prompt=5, new=5)], running, BUDGET)
    assert plan.admit == ()  # the small one does not overtake the big one


def test_prefill_budget_is_padded_but_a_lone_request_always_fits() -> None:
    plan = plan_step(
        [waiting(0, prompt=50), waiting(1, prompt=50), waiting(2, prompt=50)], [], BUDGET
    )
    assert plan.admit == ("w0", "w1")  # 3 x 50 > 120
    assert plan.blocked_by == "prefill_tokens"
    huge = Budget(4, 10_000, 10, 2)
    assert plan_step([waiting(0, prompt=500)], [], huge).admit == ("w0",)


def test_adapter_slots_skip_without_blocking_others() -> None:
    running = [Running("r0", 20, "x"), Running("r1", 20, "y")]
    queue = [waiting(0, adapter="z"), waiting(1, adapter="x"), waiting(2), waiting(3, adapter="z")]
    plan = plan_step(queue, running, BUDGET)
    assert plan.admit == ("w1", "w2")
    assert plan.blocked_by == "adapter_slots"


def test_new_adapters_take_free_slots_once() -> None:
    queue = [
        waiting(0, adapter="x"),
        waiting(1, adapter="x"),
        waiting(2, adapter="y"),
        waiting(3, adapter="z"),
    ]
    assert plan_step(queue, [], BUDGET).admit == ("w0", "w1", "w2")


def test_nothing_waiting_nothing_admitted() -> None:
    assert plan_step([], [Running("r0", 10)], BUDGET).admit == ()


def test_prefill_waits_for_company_while_a_batch_runs() -> None:
    policy = PrefillPolicy(waiting_served_ratio=0.5, max_waiting_steps=3)
    assert not prefill_due(0, 0, 0, policy)
    assert prefill_due(1, 0, 0, policy)  # idle engine: at once
    assert not prefill_due(1, 8, 0, policy)  # 1 < 0.5 x 8
    assert prefill_due(4, 8, 0, policy)
    assert prefill_due(1, 8, 3, policy)  # waited long enough
    assert prefill_due(1, 8, 0, PrefillPolicy(max_waiting_steps=0))


def test_prefill_per_step_is_capped_only_while_rows_decode() -> None:
    assert step_prefill_tokens(4096, decoding_rows=0, decoding_cap=256) == 4096
    assert step_prefill_tokens(4096, decoding_rows=3, decoding_cap=256) == 256
    assert step_prefill_tokens(100, decoding_rows=3, decoding_cap=256) == 100


def test_a_burst_of_short_prompts_is_spread_over_steps_while_rows_decode() -> None:
    burst = [waiting(i, prompt=30) for i in range(8)]
    budget = Budget(
        max_batch_size=16,
        max_batch_total_tokens=4096,
        max_batch_prefill_tokens=4096,
        adapter_slots=2,
    )
    idle = plan_step(burst, [], budget)
    assert len(idle.admit) == 8  # nothing decodes: prefill them all at once
    capped = Budget(
        max_batch_size=16,
        max_batch_total_tokens=4096,
        max_batch_prefill_tokens=step_prefill_tokens(4096, decoding_rows=2, decoding_cap=64),
        adapter_slots=2,
    )
    plan = plan_step(burst, [Running("r0", 40), Running("r1", 40)], capped)
    assert plan.admit == ("w0", "w1") and plan.blocked_by == "prefill_tokens"  # 2 x 30 <= 64
