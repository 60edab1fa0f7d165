"""Locust CSV -> level numbers -> markdown, plots and comparisons."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from loraland.loadtest.compare import compare_markdown
from loraland.loadtest.errors import LoadTestError
from loraland.loadtest.options import LoadOptions
from loraland.loadtest.plots import CHARTS, plot_compare, plot_sweep
from loraland.loadtest.report import (
    SweepReport,
    level_result,
    load_report,
    read_level,
    read_stats_csv,
    render_markdown,
)

DATA = Path(__file__).parent / "data"
HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)


def _row(
    kind: str, name: str, count: int, fails: int, mean: float, p50: float, p95: float, size: float
) -> str:
    percentiles = [p50, p50, p50, p50, p95, p95, p95, p95, p95, p95, p95]
    cells = [kind, name, count, fails, p50, mean, p50 / 2, p95, size, 1.0, 0.0, *percentiles]
    return ",".join(str(c) for c in cells)


def _write_stats(path: Path, rows: list[str]) -> Path:
    path.write_text(
        "\n".join([HEADER, *rows, ",Aggregated,99,9,1,1,1,1,1,1,0,1,1,1,1,1,1,1,1,1,1,1"]) + "\n"
    )
    return path


def test_real_locust_csv() -> None:
    """A stats CSV written by a real 2-user run against loraland serve (8 tokens each)."""
    level = read_level(DATA / "real")
    assert level.users == 2 and level.completed == 4
    assert level.output_tokens_total == 32 and level.output_tokens_mean == 8
    assert level.duration_s == pytest.approx(14.7618, abs=1e-3)
    assert level.aggregate_tokens_per_s == pytest.approx(32 / 14.7618, rel=1e-4)
    assert level.requests_per_s == pytest.approx(4 / 14.7618, rel=1e-4)
    assert level.time_to_first_token_ms is not None and level.total_request_time_ms is not None
    assert level.token_streaming_time_ms is not None and level.tokens_per_s_per_user is not None
    # Each answer's total is its TTFT plus its streaming time, so the exact means add up.
    assert level.total_request_time_ms.mean == pytest.approx(
        level.time_to_first_token_ms.mean + level.token_streaming_time_ms.mean, rel=1e-9
    )
    assert level.time_to_first_token_ms.p50 == 2100 and level.total_request_time_ms.p95 == 6100
    assert level.error_rate == 0 and level.overload_rate == 0


def test_failures_and_429s_are_counted_apart(tmp_path: Path) -> None:
    stats = read_stats_csv(
        _write_stats(
            tmp_path / "x_stats.csv",
            [
                _row("TGI", "time_to_first_token", 6, 0, 300, 280, 500, 10),
                _row("TGI", "total_request_time", 6, 0, 1300, 1200, 1900, 10),
                _row("TGI", "token_streaming_time", 6, 0, 1000, 950, 1400, 10),
                _row("TGI", "output_tokens_per_s", 6, 0, 10.2, 10, 12, 10),
                _row("TGI", "failed_request", 2, 2, 50, 40, 90, 0),
                _row("OVERLOADED", "429_overloaded", 2, 0, 3, 3, 5, 0),
            ],
        )
    )
    level = level_result(4, 12.0, stats)
    assert (level.completed, level.failed, level.overloaded) == (6, 2, 2)
    assert level.error_rate == pytest.approx(0.2) and level.overload_rate == pytest.approx(0.2)
    assert level.aggregate_tokens_per_s == pytest.approx(60 / 12.0)
    assert level.requests_per_s == pytest.approx(0.5)
    assert level.tokens_per_s_per_user is not None and level.tokens_per_s_per_user.p50 == 10


def test_a_level_with_no_answers(tmp_path: Path) -> None:
    stats = read_stats_csv(
        _write_stats(tmp_path / "x_stats.csv", [_row("TGI", "failed_request", 3, 3, 5, 5, 9, 0)])
    )
    level = level_result(1, 5.0, stats)
    assert level.completed == 0 and level.error_rate == 1.0 and level.aggregate_tokens_per_s == 0
    assert level.time_to_first_token_ms is None
    assert "| 1 | 0.00 | - | - |" in render_markdown(_report([level]))


def test_csv_errors(tmp_path: Path) -> None:
    with pytest.raises(LoadTestError, match="does not exist"):
        read_stats_csv(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("Type,Name\nTGI,total_request_time\n")
    with pytest.raises(LoadTestError, match="'Request Count' is missing"):
        read_stats_csv(bad)
    mixed = _write_stats(
        tmp_path / "mixed.csv",
        [
            _row("TGI", "total_request_time", 1, 0, 1, 1, 1, 1),
            _row("OPENAI", "total_request_time", 1, 0, 1, 1, 1, 1),
        ],
    )
    with pytest.raises(LoadTestError, match="more than one request type"):
        read_stats_csv(mixed)
    with pytest.raises(LoadTestError, match="not made with loraland's locustfile"):
        read_level(tmp_path / "nothing")
    with pytest.raises(LoadTestError, match="duration must be positive"):
        level_result(1, 0.0, {})


def _report(levels: list, host: str = "http://h:8080") -> SweepReport:  # type: ignore[type-arg]
    options = LoadOptions.from_flags(adapters="ad-{0..9}", adapter_dist="zipf", max_new_tokens="16")
    return SweepReport(
        host=host, api="tgi", duration_s=30, options=options.model_dump(mode="json"), levels=levels
    )


def _sweep(tmp_path: Path) -> SweepReport:
    stats_a = read_stats_csv(DATA / "real_stats.csv")
    one = level_result(1, 14.0, stats_a)
    two = level_result(2, 14.7, stats_a)
    return _report([one, two])


def test_markdown_table(tmp_path: Path) -> None:
    text = render_markdown(_sweep(tmp_path), ["plots/time_to_first_token.png"])
    assert "| users | requests/s | TTFT p50 (ms)" in text
    assert "10 adapters, zipf (s=1.0)" in text and "max new tokens: 16" in text
    rows = [
        line for line in text.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")
    ]
    assert len(rows) == 2
    assert "| 2,100 | 2,800 | 5,800 | 6,100 | 2 | 2.1 | 2.2 | 4 | 0.0% | 0.0% |" in rows[1]
    assert "upside down" in text and "![time_to_first_token](plots/time_to_first_token.png)" in text


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_plots(tmp_path: Path) -> None:
    paths = plot_sweep(_sweep(tmp_path), tmp_path / "plots")
    assert sorted(p.name for p in paths) == sorted(c.file for c in CHARTS)
    assert all(_is_png(p) for p in paths)


def test_compare(tmp_path: Path) -> None:
    a = _sweep(tmp_path)
    faster = [
        lvl.model_copy(update={"aggregate_tokens_per_s": 2 * lvl.aggregate_tokens_per_s})
        for lvl in a.levels
    ]
    b = _report(
        [*faster, level_result(8, 10.0, read_stats_csv(DATA / "real_stats.csv"))],
        host="http://other",
    )
    text = compare_markdown(("ours", a), ("theirs", b))
    assert "ours (A) vs theirs (B)" in text and "## 1 users" in text and "## 2 users" in text
    assert "## 8 users" not in text and "User counts in only one sweep: 8." in text
    aggregate = [line for line in text.splitlines() if line.startswith("| tokens/s aggregate")]
    assert len(aggregate) == 2 and all(line.endswith("| 2.00x |") for line in aggregate)
    paths = plot_compare(("ours", a), ("theirs", b), tmp_path / "cmp")
    assert all(p.name.startswith("compare_") and _is_png(p) for p in paths)


def test_load_report_round_trip(tmp_path: Path) -> None:
    report = _sweep(tmp_path)
    (tmp_path / "summary.json").write_text(report.model_dump_json())
    assert load_report(tmp_path) == report
    with pytest.raises(LoadTestError, match=r"summary\.json is missing"):
        load_report(tmp_path / "elsewhere")
    shutil.copy(DATA / "real_run.json", tmp_path / "summary.json")
    with pytest.raises(LoadTestError, match="not a sweep summary"):
        load_report(tmp_path)
