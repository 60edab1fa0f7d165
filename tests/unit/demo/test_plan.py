from __future__ import annotations

from pathlib import Path

from loraland.api.adapter import AdapterMetadata, Scores
from loraland.demo.plan import (
    DemoPlan,
    finetune_args,
    leaderboard,
    leaderboard_markdown,
    serve_args,
    sweep_args,
)


def _meta(task: str, base: float | None, adapter: float) -> AdapterMetadata:
    return AdapterMetadata(
        name=task,
        base_model="builtin://smollm2-135m-instruct",
        sha256="0" * 64,
        size_bytes=1,
        scores=Scores(task=task, metric="accuracy", base=base, adapter=adapter, samples=10),
    )


def test_presets_train_three_tasks_and_quick_is_smaller() -> None:
    full, quick = DemoPlan.full(), DemoPlan.quick()
    assert len(full.tasks) >= 3 and len(set(full.tasks)) == len(full.tasks)
    assert quick.max_steps < full.max_steps
    assert quick.eval_samples < full.eval_samples
    assert max(quick.users) < max(full.users)


def test_command_lines_name_every_adapter(tmp_path: Path) -> None:
    plan = DemoPlan.quick()
    args = finetune_args(plan, "intents", tmp_path)
    assert args[0] == "finetune"
    assert args[args.index("--output") + 1] == str(tmp_path / "adapters" / "intents")
    assert f"evaluation.maxSamples={plan.eval_samples}" in args
    serve = serve_args(plan.tasks, tmp_path, 8080)
    assert [a for a in serve if "=" in a] == [
        f"{t}={tmp_path / 'adapters' / t}" for t in plan.tasks
    ]
    sweep = sweep_args(plan, plan.tasks, "http://127.0.0.1:8080", tmp_path)
    assert sweep[sweep.index("--adapters") + 1] == ",".join(plan.tasks)
    assert sweep[sweep.index("--users") + 1] == ",".join(map(str, plan.users))


def test_leaderboard_gain_and_markdown() -> None:
    rows = leaderboard([_meta("intents", 0.1, 0.75), _meta("sentiment", None, 0.5)])
    assert rows[0].gain is not None and abs(rows[0].gain - 0.65) < 1e-9
    assert rows[1].gain is None
    table = leaderboard_markdown(rows)
    assert "| intents | accuracy | 10.0 | 75.0 | +65.0 |" in table
    assert "| sentiment | accuracy | - | 50.0 | - |" in table


def test_unscored_adapters_are_left_out() -> None:
    unscored = _meta("x", 0.0, 0.0).model_copy(update={"scores": None})
    assert leaderboard([unscored]) == []
