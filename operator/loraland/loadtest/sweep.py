"""A sweep: one headless Locust run per user count, then the report.

Each level is its own ``locust`` process (a fresh process means fresh statistics and no
state carried between levels), writing into ``OUT/users-NNN/``:

    locust_stats.csv, locust_stats_history.csv, locust_failures.csv,
    locust_exceptions.csv   Locust's own CSV files
    locust_run.json          the measured wall-clock span (see users.RunRecord)
    locust.html, locust.log  Locust's HTML report and its output

and the sweep writes ``OUT/summary.json``, ``OUT/summary.md`` and ``OUT/plots/*.png``.
Command lines are built by pure functions; only :func:`run_sweep` starts processes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from loraland.loadtest.errors import LoadTestError
from loraland.loadtest.options import LoadOptions
from loraland.loadtest.plots import plot_sweep
from loraland.loadtest.report import (
    RUN_SUFFIX,
    STATS_SUFFIX,
    SUMMARY_JSON,
    SUMMARY_MD,
    LevelResult,
    SweepReport,
    read_level,
    render_markdown,
)

#: The locustfile shipped inside the package (the same thin file as loadtests/locustfile.py).
BUNDLED_LOCUSTFILE = Path(__file__).with_name("suite") / "locustfile.py"
CSV_STEM = "locust"
LEVEL_DIR = re.compile(r"^users-(\d+)$")
#: Grace for a level's process beyond its run time: start-up, stopping, writing files.
LEVEL_GRACE_S = 120.0
#: ``sweep --print-summary`` prints summary.json after this line, so a log (an in-cluster
#: run's ``kubectl logs``) carries the report.
SUMMARY_MARKER = "--- loraland loadtest summary.json ---"

_SPAN = re.compile(r"(\d+)\s*([hms]?)")


def parse_users(text: str) -> list[int]:
    """``"1,2,4,8"`` -> ``[1, 2, 4, 8]`` (sorted, each at least 1, no repeats)."""
    values: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise LoadTestError(f"--users: {part!r} is not a positive whole number")
        values.append(int(part))
    if not values:
        raise LoadTestError(f"--users: no user counts in {text!r}")
    if len(set(values)) != len(values):
        raise LoadTestError(f"--users: {text!r} repeats a user count")
    return sorted(values)


def parse_duration(text: str) -> int:
    """``"30s"``, ``"2m"``, ``"1m30s"``, ``"1h"`` or ``"45"`` -> whole seconds (>= 1)."""
    compact = text.strip().lower().replace(" ", "")
    if not compact or _SPAN.sub("", compact):
        raise LoadTestError(f"--duration: expected e.g. 30s, 2m, 1m30s; got {text!r}")
    scale = {"h": 3600, "m": 60, "s": 1, "": 1}
    seconds = sum(int(n) * scale[unit] for n, unit in _SPAN.findall(compact))
    if seconds < 1:
        raise LoadTestError(f"--duration: {text!r} is under one second")
    return seconds


def check_reachable(host: str, api: str, timeout_s: float = 10.0) -> None:
    """Fail with one line when nothing answers at ``host`` (any HTTP status will do)."""
    if api == "grpc":
        import grpc

        from loraland.loadtest.grpc_client import grpc_target

        try:
            target = grpc_target(host)
        except ValueError as exc:
            raise LoadTestError(f"--host: {exc}") from None
        channel = grpc.insecure_channel(target)
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            raise LoadTestError(
                f"--host: no gRPC server answered at {target} within {timeout_s:.0f} s"
            ) from None
        finally:
            channel.close()
        return
    import httpx

    if not host.startswith(("http://", "https://")):
        raise LoadTestError(f"--host: expected an http:// or https:// URL, got {host!r}")
    path = "/v1/models" if api == "openai" else "/health"
    try:
        httpx.get(host.rstrip("/") + path, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise LoadTestError(f"--host: cannot reach {host} ({type(exc).__name__}: {exc})") from None


def level_dir(out: Path, users: int) -> Path:
    return out / f"users-{users:03d}"


def csv_prefix(out: Path, users: int) -> Path:
    return level_dir(out, users) / CSV_STEM


class SweepConfig(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    host: str = Field(min_length=1)
    users: list[int]
    duration_s: int = Field(ge=1)
    out: Path
    options: LoadOptions = Field(default_factory=LoadOptions)
    #: Users started per second; None: all of a level's users in the first second.
    spawn_rate: float | None = None
    locustfile: Path = BUNDLED_LOCUSTFILE
    extra_args: tuple[str, ...] = ()


def locust_command(config: SweepConfig, users: int, python: str = sys.executable) -> list[str]:
    """The ``locust`` command line of one level."""
    prefix = csv_prefix(config.out, users)
    spawn_rate = config.spawn_rate if config.spawn_rate is not None else users
    return [
        python,
        "-m",
        "locust",
        "-f",
        str(config.locustfile),
        "--headless",
        "--host",
        config.host,
        "--users",
        str(users),
        "--spawn-rate",
        f"{spawn_rate:g}",
        "--run-time",
        f"{config.duration_s}s",
        # In-flight requests are cut when time is up: they are not counted anywhere.
        "--stop-timeout",
        "0",
        "--csv",
        str(prefix),
        "--html",
        str(level_dir(config.out, users) / "locust.html"),
        "--only-summary",
        # Failures are results here, not a reason to fail the process.
        "--exit-code-on-error",
        "0",
        *config.options.to_args(),
        *config.extra_args,
    ]


Runner = Callable[[list[str], Path, float], int]


def run_process(command: list[str], log_path: Path, timeout_s: float) -> int:
    """Run one level, its output into ``log_path``; the exit code."""
    with log_path.open("wb") as log:
        try:
            return subprocess.run(
                command, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, check=False
            ).returncode
        except subprocess.TimeoutExpired:
            raise LoadTestError(
                f"Locust did not finish within {timeout_s:.0f} s; see {log_path}"
            ) from None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_level(config: SweepConfig, users: int, runner: Runner = run_process) -> LevelResult:
    directory = level_dir(config.out, users)
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "locust.log"
    code = runner(locust_command(config, users), log_path, config.duration_s + LEVEL_GRACE_S)
    prefix = csv_prefix(config.out, users)
    missing = [
        p
        for p in (Path(f"{prefix}{STATS_SUFFIX}"), Path(f"{prefix}{RUN_SUFFIX}"))
        if not p.exists()
    ]
    if code != 0 or missing:
        raise LoadTestError(
            f"Locust at {users} users exited with code {code}"
            + (f" without writing {', '.join(str(m) for m in missing)}" if missing else "")
            + f"; last lines of {log_path}:\n{_tail(log_path)}"
        )
    return read_level(prefix)


def collect_levels(out: Path) -> list[LevelResult]:
    """Every ``users-NNN`` level already in a sweep folder, ascending."""
    found = sorted(
        (int(m.group(1)), p) for p in out.iterdir() if p.is_dir() and (m := LEVEL_DIR.match(p.name))
    )
    return [read_level(p / CSV_STEM) for _, p in found]


def write_report(
    out: Path,
    host: str,
    duration_s: float,
    options: LoadOptions,
    levels: Sequence[LevelResult],
) -> SweepReport:
    report = SweepReport(
        host=host,
        api=options.api,
        duration_s=duration_s,
        options=options.model_dump(mode="json"),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        levels=sorted(levels, key=lambda lvl: lvl.users),
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY_JSON).write_text(report.model_dump_json(indent=2) + "\n")
    plots = [p.relative_to(out).as_posix() for p in plot_sweep(report, out / "plots")]
    (out / SUMMARY_MD).write_text(render_markdown(report, plots))
    return report


def summary_from_log(log: str) -> SweepReport:
    """The report a ``sweep --print-summary`` log carries after :data:`SUMMARY_MARKER`."""
    _, found, tail = log.rpartition(SUMMARY_MARKER)
    if not found:
        raise LoadTestError(f"the log holds no {SUMMARY_MARKER!r} line: the run did not finish")
    return SweepReport.model_validate_json(tail.strip())


def run_sweep(
    config: SweepConfig,
    runner: Runner = run_process,
    echo: Callable[[str], None] = print,
) -> SweepReport:
    if not config.locustfile.is_file():
        raise LoadTestError(f"--locustfile: {config.locustfile} does not exist")
    config.out.mkdir(parents=True, exist_ok=True)
    levels = []
    for users in config.users:
        echo(f"{users} users for {config.duration_s} s ...")
        level = run_level(config, users, runner)
        echo(
            f"  {level.completed} requests, {level.aggregate_tokens_per_s:.1f} tokens/s "
            f"aggregate, error rate {level.error_rate:.1%}"
        )
        levels.append(level)
    return write_report(config.out, config.host, config.duration_s, config.options, levels)
