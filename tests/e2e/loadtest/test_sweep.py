"""Short sweeps against a real ``loraland serve``: the report's numbers are present, positive
and consistent with each other and with the server's own counters.

Kept small for a shared 2-core machine: 4 new tokens per request (``--ignore-eos``, so every
answer has exactly 4), 10-20-word prompts, levels of 15 s (TGI sweep, OpenAI) or 10 s (gRPC),
long enough for a few answers even when other work shares the cores. No wall-clock
expectations: only relations that hold at any speed.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest
from loadtest_e2e_support import ADAPTERS, MAX_CONCURRENT, Server
from loraland.loadtest.report import LevelResult, SweepReport, load_report

TOKENS = 4
COMMON = ["--prompt-words", "10-20", "--seed", "3"]
FIXED = ["--max-new-tokens", str(TOKENS), "--ignore-eos"]


def _sweep(out: Path, *args: str, timeout: float = 240) -> SweepReport:
    command = [sys.executable, "-m", "loraland.cli", "loadtest", "sweep", "--out", str(out), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return load_report(out)


_OK = re.compile(r'^loraland_requests_total\{adapter="([^"]+)",status="ok"\} ([0-9.e+]+)$', re.M)


def _ok_counts(server: Server) -> dict[str, float]:
    return {adapter: float(value) for adapter, value in _OK.findall(server.metrics())}


def _check_level(level: LevelResult, duration: int, tokens: int | None) -> None:
    assert level.completed >= 1, level
    assert level.failed == 0 and level.error_rate == 0
    assert 0.5 * duration <= level.duration_s <= 1.5 * duration
    ttft, total = level.time_to_first_token_ms, level.total_request_time_ms
    streaming, rate = level.token_streaming_time_ms, level.tokens_per_s_per_user
    assert ttft is not None and total is not None and streaming is not None and rate is not None
    for value in (ttft.p50, ttft.p95, total.p50, total.p95, rate.p50, rate.mean):
        assert value > 0
    assert ttft.p50 <= ttft.p95 and total.p50 <= total.p95
    # Per request, total = TTFT + streaming and TTFT <= total; bucketing keeps the order.
    assert ttft.p50 <= total.p50 and ttft.p95 <= total.p95
    assert total.mean == pytest.approx(ttft.mean + streaming.mean, rel=1e-6)
    if tokens is not None:
        assert level.output_tokens_total == level.completed * tokens
    # Aggregate tokens/s is completed requests x tokens per request / time, by both routes.
    assert level.aggregate_tokens_per_s == pytest.approx(
        level.completed * level.output_tokens_mean / level.duration_s, rel=1e-6
    )
    assert level.aggregate_tokens_per_s == pytest.approx(
        level.requests_per_s * level.output_tokens_mean, rel=1e-6
    )
    # Each user's answers follow one another, so their total times fit in the run:
    # completed x mean total time <= users x duration.
    assert level.completed * total.mean / 1000 <= level.users * level.duration_s * 1.02


def _locust_rows(folder: Path, users: int) -> dict[str, dict[str, str]]:
    with (folder / f"users-{users:03d}" / "locust_stats.csv").open() as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


def test_tgi_sweep_two_levels(server: Server, tmp_path: Path) -> None:
    before = _ok_counts(server)
    out = tmp_path / "tgi"
    report = _sweep(
        out, "--host", server.url, "--users", "1,2", "--duration", "15s",
        "--adapters", ",".join(ADAPTERS), *FIXED, *COMMON,
    )  # fmt: skip
    after = _ok_counts(server)

    assert [lvl.users for lvl in report.levels] == [1, 2]
    for level in report.levels:
        _check_level(level, 15, TOKENS)
        assert level.overloaded == 0
        # Locust's own rows agree with the report (same events, Locust's own arithmetic).
        rows = _locust_rows(out, level.users)
        assert int(rows["total_request_time"]["Request Count"]) == level.completed
        assert float(rows["total_request_time"]["Average Content Size"]) == TOKENS
        assert int(rows["time_to_first_token"]["Request Count"]) == level.completed
        assert "failed_request" not in rows and "429_overloaded" not in rows

    # The server answered every request the report counts, plus at most one per user that
    # was done on the server but not yet read when its level stopped; both adapters served.
    served = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    completed = sum(lvl.completed for lvl in report.levels)
    assert completed <= sum(served.values()) <= completed + 1 + 2
    assert all(served.get(name, 0) >= 1 for name in ADAPTERS), served
    assert served.get("base", 0) == 0

    summary = (out / "summary.md").read_text()
    for level in report.levels:
        row = next(r for r in summary.splitlines() if r.startswith(f"| {level.users} |"))
        assert f"| {level.completed} | 0.0% | 0.0% |" in row
        assert f"{level.aggregate_tokens_per_s:,.1f}" in row
    for name in ("time_to_first_token", "total_request_time", "tokens_per_second"):
        png = out / "plots" / f"{name}.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and f"plots/{name}.png" in summary
    for users in (1, 2):
        level_dir = out / f"users-{users:03d}"
        assert (level_dir / "locust.html").stat().st_size > 1000
        assert (level_dir / "locust_stats_history.csv").exists()


def test_grpc_level(server: Server, tmp_path: Path) -> None:
    report = _sweep(
        tmp_path / "grpc", "--host", server.grpc_target, "--api", "grpc", "--users", "1",
        "--duration", "10s", "--adapters", "ad-1", *FIXED, *COMMON,
    )  # fmt: skip
    (level,) = report.levels
    _check_level(level, 10, TOKENS)
    assert _locust_rows(tmp_path / "grpc", 1)["total_request_time"]["Type"] == "GRPC"


def test_openai_level_with_429s(server: Server, tmp_path: Path) -> None:
    """One user more than the server admits, all on the base model (its name read from
    /v1/models): the one left over gets 429s, counted apart and not as errors. OpenAI has
    no ignore-EOS, so answers may be shorter than asked."""
    users = MAX_CONCURRENT + 1
    out = tmp_path / "openai"
    report = _sweep(
        out, "--host", server.url, "--api", "openai", "--users", str(users), "--duration", "15s",
        "--adapter-dist", "none", "--max-new-tokens", "3", "--overload-backoff", "0.3", *COMMON,
    )  # fmt: skip
    (level,) = report.levels
    _check_level(level, 15, None)
    assert level.overloaded >= 1 and level.overload_rate > 0
    rows = _locust_rows(out, users)
    assert rows["429_overloaded"]["Type"] == "OVERLOADED"
    assert int(rows["429_overloaded"]["Failure Count"]) == 0
    assert rows["total_request_time"]["Type"] == "OPENAI"
    failures = (out / f"users-{users:03d}" / "locust_failures.csv").read_text().splitlines()
    assert failures[1:] == []
