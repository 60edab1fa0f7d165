"""What the demo does, as plain data: presets, command lines, the leaderboard. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field

from loraland.api.adapter import AdapterMetadata
from loraland.loadtest.report import SweepReport

BASE_MODEL = "builtin://smollm2-135m-instruct"


class Step(StrEnum):
    TRAIN = "train"
    SERVE = "serve"
    LOADTEST = "loadtest"
    REPORT = "report"


class DemoPlan(BaseModel):
    """Sizes of every step. ``full`` fits in 15 minutes on 2 cores; ``quick`` in a few."""

    tasks: list[str] = Field(default_factory=lambda: ["intents", "sentiment", "rating"])
    max_steps: int = Field(ge=1)
    # Short runs need a LoRA-sized learning rate, well above full fine-tuning's.
    learning_rate: float = Field(default=2e-3, gt=0)
    batch_size: int = Field(ge=1)
    max_seq_length: int = Field(ge=16)
    train_samples: int = Field(ge=8)
    eval_samples: int = Field(ge=4)
    users: list[int]
    level_seconds: int = Field(ge=1)
    max_new_tokens: int = Field(ge=1)
    prompt_words: str

    @classmethod
    def full(cls) -> DemoPlan:
        return cls(
            max_steps=80,
            batch_size=8,
            max_seq_length=96,
            train_samples=640,
            eval_samples=100,
            users=[1, 4, 16],
            level_seconds=30,
            max_new_tokens=32,
            prompt_words="20-40",
        )

    @classmethod
    def quick(cls) -> DemoPlan:
        return cls(
            max_steps=30,
            batch_size=8,
            max_seq_length=80,
            train_samples=240,
            eval_samples=16,
            users=[1, 2],
            level_seconds=8,
            max_new_tokens=8,
            prompt_words="10-20",
        )


def adapter_dir(out: Path, task: str) -> Path:
    return out / "adapters" / task


def finetune_args(plan: DemoPlan, task: str, out: Path) -> list[str]:
    """The ``loraland finetune`` arguments that train and score the adapter for ``task``."""
    return [
        "finetune",
        "--base-model", BASE_MODEL,
        "--task", task,
        "--eval-task", task,
        "--output", str(adapter_dir(out, task)),
        # Checkpoints beside the output, so --fresh (which removes OUT) really retrains.
        "--work-dir", str(out / "work" / task),
        "--max-steps", str(plan.max_steps),
        "--batch-size", str(plan.batch_size),
        "--learning-rate", str(plan.learning_rate),
        "--set", f"training.maxSeqLength={plan.max_seq_length}",
        "--set", f"dataset.maxSamples={plan.train_samples}",
        "--set", f"evaluation.maxSamples={plan.eval_samples}",
        "--set", f"output.adapterName={task}",
    ]  # fmt: skip


def serve_args(tasks: Sequence[str], out: Path, port: int) -> list[str]:
    args = ["serve", "--base-model", BASE_MODEL, "--host", "127.0.0.1", "--port", str(port)]
    for task in tasks:
        args += ["--adapter", f"{task}={adapter_dir(out, task)}"]
    return args


def sweep_args(plan: DemoPlan, tasks: Sequence[str], host: str, out: Path) -> list[str]:
    return [
        "loadtest", "sweep",
        "--host", host,
        "--users", ",".join(str(u) for u in plan.users),
        "--duration", f"{plan.level_seconds}s",
        "--adapters", ",".join(tasks),
        "--adapter-dist", "uniform",
        "--prompt-words", plan.prompt_words,
        "--max-new-tokens", str(plan.max_new_tokens),
        "--out", str(out / "loadtest"),
    ]  # fmt: skip


class LeaderboardRow(BaseModel):
    task: str
    metric: str
    base: float | None
    adapter: float

    @property
    def gain(self) -> float | None:
        return None if self.base is None else self.adapter - self.base


def leaderboard(metadata: Sequence[AdapterMetadata]) -> list[LeaderboardRow]:
    rows = []
    for meta in metadata:
        if meta.scores is None:
            continue
        rows.append(
            LeaderboardRow(
                task=meta.scores.task,
                metric=meta.scores.metric,
                base=meta.scores.base,
                adapter=meta.scores.adapter,
            )
        )
    return rows


def percent(value: float | None, signed: bool = False) -> str:
    """A 0..1 score as a percentage with one decimal; '-' when there is none."""
    if value is None:
        return "-"
    return f"{value * 100:+.1f}" if signed else f"{value * 100:.1f}"


def leaderboard_markdown(rows: Sequence[LeaderboardRow]) -> str:
    lines = ["| task | metric | base | adapter | gain |", "| --- | --- | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(
            f"| {row.task} | {row.metric} | {percent(row.base)} | {percent(row.adapter)} "
            f"| {percent(row.gain, signed=True)} |"
        )
    return "\n".join(lines)


def loadtest_markdown(report: SweepReport) -> str:
    """The few numbers a reader wants first; loadtest/summary.md has all of them."""
    lines = [
        "| users | TTFT p50 (ms) | TTFT p95 (ms) | total p50 (ms) | tokens/s per user p50 "
        "| tokens/s aggregate | requests | error rate |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}" if value >= 100 else f"{value:.1f}"

    for lvl in report.levels:
        ttft, total, tps = (
            lvl.time_to_first_token_ms,
            lvl.total_request_time_ms,
            lvl.tokens_per_s_per_user,
        )
        lines.append(
            f"| {lvl.users} | {fmt(ttft.p50 if ttft else None)} "
            f"| {fmt(ttft.p95 if ttft else None)} "
            f"| {fmt(total.p50 if total else None)} | {fmt(tps.p50 if tps else None)} "
            f"| {fmt(lvl.aggregate_tokens_per_s)} | {lvl.completed} | {lvl.error_rate:.1%} |"
        )
    lines += ["", "Full table, CSVs and plots: [loadtest/summary.md](loadtest/summary.md)."]
    return "\n".join(lines)


def report_markdown(
    rows: Sequence[LeaderboardRow], loadtest_summary: str | None, plots: Sequence[str]
) -> str:
    parts = [
        "# loraland demo report",
        "",
        f"Base model: `{BASE_MODEL}`. Scores are percentages on each task's held-out "
        "examples; the base model is scored with the same prompts and metric.",
        "",
        "## Leaderboard",
        "",
        leaderboard_markdown(rows),
        "",
    ]
    if loadtest_summary:
        parts += ["## Serving all adapters from one server", "", loadtest_summary.strip(), ""]
    if plots:
        parts += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    return "\n".join(parts)
