"""PNG plots of a sweep (and of two sweeps side by side) against the number of users.

matplotlib runs with the Agg backend (files only, no display) and every figure is closed
after saving, so plotting in a long-lived process does not leak.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from loraland.loadtest.report import LevelResult, SweepReport, percentile_of

Getter = Callable[[LevelResult], float | None]


@dataclass(frozen=True)
class Series:
    label: str
    get: Getter


@dataclass(frozen=True)
class Chart:
    file: str
    title: str
    ylabel: str
    series: tuple[Series, ...]


CHARTS: tuple[Chart, ...] = (
    Chart(
        "time_to_first_token.png",
        "Time to first token",
        "ms",
        (
            Series("p50", percentile_of("time_to_first_token_ms", "p50")),
            Series("p95", percentile_of("time_to_first_token_ms", "p95")),
        ),
    ),
    Chart(
        "total_request_time.png",
        "Total request time",
        "ms",
        (
            Series("p50", percentile_of("total_request_time_ms", "p50")),
            Series("p95", percentile_of("total_request_time_ms", "p95")),
        ),
    ),
    Chart(
        "tokens_per_second.png",
        "Output tokens per second",
        "tokens/s",
        (
            Series("per user (p50)", percentile_of("tokens_per_s_per_user", "p50")),
            Series("aggregate", lambda lvl: lvl.aggregate_tokens_per_s),
        ),
    ),
    Chart(
        "requests_per_second.png",
        "Completed requests per second",
        "requests/s",
        (Series("requests/s", lambda lvl: lvl.requests_per_s),),
    ),
    Chart(
        "error_rate.png",
        "Error and 429 rates",
        "% of attempted requests",
        (
            Series("errors", lambda lvl: 100 * lvl.error_rate),
            Series("429 overloaded", lambda lvl: 100 * lvl.overload_rate),
        ),
    ),
)


def _points(levels: Sequence[LevelResult], get: Getter) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for level in levels:
        value = get(level)
        if value is not None:
            xs.append(level.users)
            ys.append(value)
    return xs, ys


def _draw(
    chart: Chart, runs: Sequence[tuple[str, SweepReport]], out_dir: Path, prefix: str
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    try:
        users: set[int] = set()
        for run_label, report in runs:
            for series in chart.series:
                xs, ys = _points(report.levels, series.get)
                users.update(xs)
                label = f"{run_label} {series.label}".strip() if len(runs) > 1 else series.label
                axes.plot(xs, ys, marker="o", label=label)
        axes.set_title(chart.title)
        axes.set_xlabel("concurrent users")
        axes.set_ylabel(chart.ylabel)
        if users and max(users) / max(min(users), 1) >= 8:
            axes.set_xscale("log", base=2)
        axes.set_xticks(sorted(users))
        axes.set_xticklabels([str(u) for u in sorted(users)])
        axes.set_ylim(bottom=0)
        axes.grid(True, alpha=0.3)
        axes.legend()
        figure.tight_layout()
        path = out_dir / f"{prefix}{chart.file}"
        figure.savefig(path)
    finally:
        plt.close(figure)
    return path


def plot_sweep(report: SweepReport, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [_draw(chart, [("", report)], out_dir, "") for chart in CHARTS]


def plot_compare(
    first: tuple[str, SweepReport], second: tuple[str, SweepReport], out_dir: Path
) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [_draw(chart, [first, second], out_dir, "compare_") for chart in CHARTS]
