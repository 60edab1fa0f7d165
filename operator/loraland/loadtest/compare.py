"""Two sweeps side by side: one markdown table per user count both sweeps ran.

Each metric shows A, B and B/A, so "B is 1.8x the aggregate tokens/s of A at 16 users"
reads straight off the table. Levels only one sweep has are listed, not compared.
"""

from __future__ import annotations

from collections.abc import Callable

from loraland.loadtest.report import LevelResult, SweepReport, fmt, percentile_of

Metric = tuple[str, Callable[[LevelResult], float | None], int]


METRICS: tuple[Metric, ...] = (
    ("requests/s", lambda lvl: lvl.requests_per_s, 2),
    ("TTFT p50 (ms)", percentile_of("time_to_first_token_ms", "p50"), 0),
    ("TTFT p95 (ms)", percentile_of("time_to_first_token_ms", "p95"), 0),
    ("total p50 (ms)", percentile_of("total_request_time_ms", "p50"), 0),
    ("total p95 (ms)", percentile_of("total_request_time_ms", "p95"), 0),
    ("tokens/s per user (p50)", percentile_of("tokens_per_s_per_user", "p50"), 1),
    ("tokens/s aggregate", lambda lvl: lvl.aggregate_tokens_per_s, 1),
    ("error rate (%)", lambda lvl: 100 * lvl.error_rate, 1),
    ("429 rate (%)", lambda lvl: 100 * lvl.overload_rate, 1),
)


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or a == 0:
        return "-"
    return f"{b / a:.2f}x"


def compare_markdown(first: tuple[str, SweepReport], second: tuple[str, SweepReport]) -> str:
    (label_a, a), (label_b, b) = first, second
    lines = [
        f"# Load test comparison: {label_a} (A) vs {label_b} (B)",
        "",
        f"- A: `{a.host}` ({a.api}), {fmt(a.duration_s, 0)} s per level",
        f"- B: `{b.host}` ({b.api}), {fmt(b.duration_s, 0)} s per level",
    ]
    common = sorted({lvl.users for lvl in a.levels} & {lvl.users for lvl in b.levels})
    only = sorted({lvl.users for lvl in a.levels} ^ {lvl.users for lvl in b.levels})
    if not common:
        lines += ["", "The two sweeps share no user count; nothing to compare."]
    for users in common:
        level_a, level_b = a.level(users), b.level(users)
        assert level_a is not None and level_b is not None
        lines += [
            "",
            f"## {users} users",
            "",
            f"| metric | A: {label_a} | B: {label_b} | B/A |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, get, digits in METRICS:
            va, vb = get(level_a), get(level_b)
            lines.append(f"| {name} | {fmt(va, digits)} | {fmt(vb, digits)} | {ratio(va, vb)} |")
    if only:
        lines += ["", f"User counts in only one sweep: {', '.join(map(str, only))}."]
    return "\n".join(lines) + "\n"
