"""Locust's CSV files -> one row of numbers per user count -> a markdown summary.

Inputs per level (a ``--csv PREFIX`` run): ``PREFIX_stats.csv`` (one row per request type
and name; see :mod:`loraland.loadtest.metrics` for the names) and ``PREFIX_run.json``
(written by :mod:`loraland.loadtest.users`: the measured wall-clock span of the run).

Definitions used for every level:

- completed: answered requests (the ``total_request_time`` row's count);
- failed: ``failed_request`` events; overloaded: 429 answers, counted apart;
- error rate: failed / (completed + failed + overloaded); 429s are in their own rate;
- requests/s: completed / duration;
- aggregate tokens/s: output tokens of all completed requests / duration, i.e. what the
  server delivered to everyone together (Locust's Average Content Size of the
  ``total_request_time`` row is the mean output tokens, so the total is count x mean);
- tokens/s per user: the median (and mean) over requests of output tokens / token
  streaming time, i.e. how fast one reader sees text appear once it has started.

Locust keeps percentiles in rounded buckets (whole numbers below 100, two significant
digits above), so p50/p95 carry that precision; means are exact.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from loraland.loadtest.errors import LoadTestError
from loraland.loadtest.metrics import (
    FAILED_REQUEST,
    OUTPUT_TOKENS_PER_S,
    OVERLOADED_NAME,
    TIME_TO_FIRST_TOKEN,
    TOKEN_STREAMING_TIME,
    TOTAL_REQUEST_TIME,
)

RUN_SUFFIX = "_run.json"
STATS_SUFFIX = "_stats.csv"


class RunRecord(BaseModel):
    """What a run's ``_run.json`` holds."""

    model_config = ConfigDict(extra="ignore")

    host: str = ""
    users: int
    spawn_rate: float = 0.0
    started_at: float
    duration_s: float
    options: dict[str, Any] = {}


class RowStats(BaseModel):
    """One row of Locust's ``_stats.csv``."""

    model_config = ConfigDict(frozen=True)

    count: int
    failures: int
    mean: float
    p50: float
    p95: float
    p99: float
    min: float
    max: float
    mean_length: float

    @property
    def total_length(self) -> float:
        return self.count * self.mean_length


def _number(row: dict[str, str], column: str, path: Path) -> float:
    value = row.get(column)
    if value is None:
        raise LoadTestError(f"{path}: column {column!r} is missing (not a Locust stats CSV?)")
    if value in ("", "N/A"):
        return math.nan
    try:
        return float(value)
    except ValueError:
        raise LoadTestError(f"{path}: column {column!r} has {value!r}, not a number") from None


def read_stats_csv(path: Path) -> dict[str, RowStats]:
    """Rows by request name; the Aggregated row is left out (it mixes our metrics).

    Requests of one run share a request type, so a name appearing under two types means
    two protocols in one run, which the report cannot tell apart: refused by name.
    """
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise LoadTestError(f"{path} does not exist (did Locust run with --csv?)") from None
    stats: dict[str, RowStats] = {}
    for row in rows:
        name = row.get("Name", "")
        if name == "Aggregated" or not name:
            continue
        if name in stats:
            raise LoadTestError(
                f"{path}: {name!r} appears under more than one request type; "
                "one run must use one --api"
            )
        stats[name] = RowStats(
            count=int(_number(row, "Request Count", path)),
            failures=int(_number(row, "Failure Count", path)),
            mean=_number(row, "Average Response Time", path),
            p50=_number(row, "50%", path),
            p95=_number(row, "95%", path),
            p99=_number(row, "99%", path),
            min=_number(row, "Min Response Time", path),
            max=_number(row, "Max Response Time", path),
            mean_length=_number(row, "Average Content Size", path),
        )
    return stats


def read_run_record(path: Path) -> RunRecord:
    try:
        return RunRecord.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise LoadTestError(
            f"{path} does not exist: the run was not made with loraland's locustfile"
        ) from None
    except (json.JSONDecodeError, ValidationError) as exc:
        raise LoadTestError(f"{path}: not a run record ({exc})") from None


class Percentiles(BaseModel):
    model_config = ConfigDict(frozen=True)

    p50: float
    p95: float
    mean: float


class LevelResult(BaseModel):
    """Everything the summary shows for one user count."""

    model_config = ConfigDict(frozen=True)

    users: int
    duration_s: float
    completed: int
    failed: int
    overloaded: int
    error_rate: float
    overload_rate: float
    requests_per_s: float
    time_to_first_token_ms: Percentiles | None
    total_request_time_ms: Percentiles | None
    token_streaming_time_ms: Percentiles | None
    output_tokens_total: int
    output_tokens_mean: float
    tokens_per_s_per_user: Percentiles | None
    aggregate_tokens_per_s: float


def percentile_of(attr: str, field: str) -> Callable[[LevelResult], float | None]:
    """A getter for e.g. ``("time_to_first_token_ms", "p95")``; None when there is none."""

    def get(level: LevelResult) -> float | None:
        value = getattr(level, attr)
        return None if value is None else float(getattr(value, field))

    return get


def _percentiles(row: RowStats | None) -> Percentiles | None:
    if row is None or row.count == 0:
        return None
    return Percentiles(p50=row.p50, p95=row.p95, mean=row.mean)


def level_result(users: int, duration_s: float, stats: dict[str, RowStats]) -> LevelResult:
    if duration_s <= 0:
        raise LoadTestError(f"a level's duration must be positive, got {duration_s}")
    total = stats.get(TOTAL_REQUEST_TIME)
    completed = total.count if total else 0
    failed = stats[FAILED_REQUEST].count if FAILED_REQUEST in stats else 0
    overloaded = stats[OVERLOADED_NAME].count if OVERLOADED_NAME in stats else 0
    attempted = completed + failed + overloaded
    tokens = round(total.total_length) if total else 0
    return LevelResult(
        users=users,
        duration_s=duration_s,
        completed=completed,
        failed=failed,
        overloaded=overloaded,
        error_rate=failed / attempted if attempted else 0.0,
        overload_rate=overloaded / attempted if attempted else 0.0,
        requests_per_s=completed / duration_s,
        time_to_first_token_ms=_percentiles(stats.get(TIME_TO_FIRST_TOKEN)),
        total_request_time_ms=_percentiles(total),
        token_streaming_time_ms=_percentiles(stats.get(TOKEN_STREAMING_TIME)),
        output_tokens_total=tokens,
        output_tokens_mean=tokens / completed if completed else 0.0,
        tokens_per_s_per_user=_percentiles(stats.get(OUTPUT_TOKENS_PER_S)),
        aggregate_tokens_per_s=tokens / duration_s,
    )


def read_level(prefix: Path) -> LevelResult:
    """One level from ``PREFIX_stats.csv`` and ``PREFIX_run.json``."""
    record = read_run_record(Path(f"{prefix}{RUN_SUFFIX}"))
    stats = read_stats_csv(Path(f"{prefix}{STATS_SUFFIX}"))
    return level_result(record.users, record.duration_s, stats)


class SweepReport(BaseModel):
    """A sweep: its settings and one result per user count (ascending)."""

    model_config = ConfigDict(frozen=True)

    host: str
    api: str
    duration_s: float
    options: dict[str, Any] = {}
    created_at: str = ""
    levels: list[LevelResult]

    def level(self, users: int) -> LevelResult | None:
        return next((lvl for lvl in self.levels if lvl.users == users), None)


SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"


def load_report(directory: Path) -> SweepReport:
    path = directory / SUMMARY_JSON
    try:
        return SweepReport.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LoadTestError(
            f"{directory} is not a sweep folder: {SUMMARY_JSON} is missing"
        ) from None
    except ValidationError as exc:
        raise LoadTestError(f"{path}: not a sweep summary ({exc.errors()[0]['msg']})") from None


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def _p(value: Percentiles | None, field: str, digits: int = 0) -> str:
    return fmt(getattr(value, field), digits) if value is not None else "-"


def render_markdown(report: SweepReport, plots: list[str] | None = None) -> str:
    options = report.options
    adapters = options.get("adapters") or []
    mix = (
        f"{len(adapters)} adapters, {options.get('adapter_dist')}"
        + (f" (s={options.get('zipf_s')})" if options.get("adapter_dist") == "zipf" else "")
        if adapters and options.get("adapter_dist") != "none"
        else "base model only"
    )
    lines = [
        "# Load test sweep",
        "",
        f"- host: `{report.host}` ({report.api})",
        f"- duration per level: {fmt(report.duration_s, 0)} s; adapter mix: {mix}",
        f"- prompts: {_prompt_note(options)}; "
        f"max new tokens: {_range(options.get('max_new_tokens'))}"
        + ("; ignore EOS" if options.get("ignore_eos") else ""),
    ]
    if report.created_at:
        lines.append(f"- run at: {report.created_at}")
    lines += [
        "",
        "| users | requests/s | TTFT p50 (ms) | TTFT p95 (ms) | total p50 (ms) | total p95 (ms) "
        "| tokens/s per user p50 | tokens/s per user mean | tokens/s aggregate | completed "
        "| error rate | 429 rate |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for lvl in report.levels:
        lines.append(
            f"| {lvl.users} | {fmt(lvl.requests_per_s, 2)} "
            f"| {_p(lvl.time_to_first_token_ms, 'p50')} | {_p(lvl.time_to_first_token_ms, 'p95')} "
            f"| {_p(lvl.total_request_time_ms, 'p50')} | {_p(lvl.total_request_time_ms, 'p95')} "
            f"| {_p(lvl.tokens_per_s_per_user, 'p50')} "
            f"| {_p(lvl.tokens_per_s_per_user, 'mean', 1)} "
            f"| {fmt(lvl.aggregate_tokens_per_s, 1)} "
            f"| {lvl.completed} | {lvl.error_rate:.1%} | {lvl.overload_rate:.1%} |"
        )
    lines += [
        "",
        "How to read it:",
        "",
        "- **TTFT**: time to first token, request sent -> first token received. **total**: "
        "total request time, sent -> last token. Token streaming time (first -> last token) "
        "is in `summary.json` and in Locust's CSV files.",
        "- **tokens/s per user**: median (and mean) over requests of output tokens / token "
        "streaming time, how fast one reader sees text arrive. The seed's definition of throughput "
        "writes this ratio upside down (time over tokens); we report tokens per second.",
        "- **tokens/s aggregate**: output tokens of all completed requests / the level's "
        "wall-clock duration, what the server delivered to all users together "
        "(= requests/s x mean output tokens).",
        "- **requests/s**: completed requests / duration. Each user waits for its answer "
        "and asks again at once, so users = requests in flight.",
        "- **error rate**: failed / attempted; 429 answers (the server shedding load) are "
        "counted apart in **429 rate**. Requests still in flight when a level ends are not "
        "counted.",
        "- Percentiles come from Locust's rounded buckets (whole numbers below 100, two "
        "significant digits above).",
    ]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{Path(p).stem}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _range(value: Any) -> str:
    if isinstance(value, dict) and "low" in value:
        low, high = value["low"], value["high"]
        return str(low) if low == high else f"{low}-{high}"
    return "-" if value is None else str(value)


def _prompt_note(options: dict[str, Any]) -> str:
    if options.get("prompt_file"):
        return f"from `{options['prompt_file']}`"
    return f"generated, {_range(options.get('prompt_words'))} words"
