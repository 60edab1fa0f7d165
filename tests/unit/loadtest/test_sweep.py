"""The sweep's pure parts: flags, Locust command lines, orchestration and the report files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from loraland.loadtest.errors import LoadTestError
from loraland.loadtest.options import LoadOptions
from loraland.loadtest.report import SUMMARY_JSON, SUMMARY_MD, load_report
from loraland.loadtest.sweep import (
    BUNDLED_LOCUSTFILE,
    SweepConfig,
    collect_levels,
    csv_prefix,
    locust_command,
    parse_duration,
    parse_users,
    run_sweep,
)

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[3]


def test_parse_users() -> None:
    assert parse_users("1,2,4,8,16,32") == [1, 2, 4, 8, 16, 32]
    assert parse_users(" 8, 1 ,") == [1, 8]
    for bad, message in [
        ("0", "not a positive"),
        ("a", "not a positive"),
        ("", "no user counts"),
        ("2,2", "repeats"),
    ]:
        with pytest.raises(LoadTestError, match="--users") as info:
            parse_users(bad)
        assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("2m", 120), ("1m30s", 90), ("45", 45), ("1h", 3600)]
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "ten", "5x", "1.5s", "-3s"])
def test_parse_duration_errors(text: str) -> None:
    with pytest.raises(LoadTestError, match="--duration"):
        parse_duration(text)


def _config(tmp_path: Path, **kwargs: object) -> SweepConfig:
    options = LoadOptions.from_flags(api="openai", adapters="a,b", max_new_tokens="16", seed=4)
    return SweepConfig(
        host="http://h:8080",
        users=[1, 4],
        duration_s=7,
        out=tmp_path / "out",
        options=options,
        **kwargs,
    )


def test_locust_command(tmp_path: Path) -> None:
    config = _config(tmp_path, extra_args=("--loglevel", "DEBUG"))
    command = locust_command(config, 4, python="py")
    assert command[:5] == ["py", "-m", "locust", "-f", str(BUNDLED_LOCUSTFILE)]
    text = " ".join(command)
    for fragment in [
        "--headless",
        "--host http://h:8080",
        "--users 4",
        "--spawn-rate 4",  # all users in the first second unless told otherwise
        "--run-time 7s",
        f"--csv {csv_prefix(config.out, 4)}",
        "--exit-code-on-error 0",
        "--api openai",
        "--adapters a,b",
        "--max-new-tokens 16",
        "--seed 4",
    ]:
        assert fragment in text
    assert command[-2:] == ["--loglevel", "DEBUG"]
    assert "--spawn-rate 0.5" in " ".join(locust_command(_config(tmp_path, spawn_rate=0.5), 4))


def test_bundled_locustfile_is_the_repo_one() -> None:
    assert BUNDLED_LOCUSTFILE.read_text() == (REPO / "loadtests" / "locustfile.py").read_text()


def _copy_level(config: SweepConfig, users: int) -> None:
    """Put a real run's files where a level writes them; users as that level's."""
    prefix = csv_prefix(config.out, users)
    shutil.copy(DATA / "real_stats.csv", f"{prefix}_stats.csv")
    record = (DATA / "real_run.json").read_text().replace('"users": 2', f'"users": {users}')
    Path(f"{prefix}_run.json").write_text(record)


def test_run_sweep_writes_the_report(tmp_path: Path) -> None:
    config = _config(tmp_path)
    commands: list[list[str]] = []

    def runner(command: list[str], log: Path, timeout_s: float) -> int:
        commands.append(command)
        users = int(command[command.index("--users") + 1])
        assert log.parent.name == f"users-{users:03d}" and timeout_s > config.duration_s
        _copy_level(config, users)
        return 0

    lines: list[str] = []
    report = run_sweep(config, runner=runner, echo=lines.append)
    assert [lvl.users for lvl in report.levels] == [1, 4] and len(commands) == 2
    rows = [r for r in (config.out / SUMMARY_MD).read_text().splitlines() if r.startswith("| 4 |")]
    assert len(rows) == 1
    assert load_report(config.out) == report
    assert sorted(p.name for p in (config.out / "plots").iterdir()) == [
        "error_rate.png",
        "requests_per_second.png",
        "time_to_first_token.png",
        "tokens_per_second.png",
        "total_request_time.png",
    ]
    assert "4 requests" in lines[1]
    assert [lvl.users for lvl in collect_levels(config.out)] == [1, 4]
    assert load_report(config.out).api == "openai"
    assert json_options(config.out)["adapters"] == ["a", "b"]


def json_options(out: Path) -> dict[str, object]:
    import json

    return json.loads((out / SUMMARY_JSON).read_text())["options"]  # type: ignore[no-any-return]


def test_a_level_that_writes_nothing_stops_the_sweep(tmp_path: Path) -> None:
    config = _config(tmp_path)

    def runner(command: list[str], log: Path, timeout_s: float) -> int:
        log.write_text("Traceback...\nImportError: no module named x\n")
        return 1

    with pytest.raises(LoadTestError, match="exited with code 1") as info:
        run_sweep(config, runner=runner, echo=lambda _: None)
    assert "ImportError: no module named x" in str(info.value)


def test_missing_locustfile(tmp_path: Path) -> None:
    with pytest.raises(LoadTestError, match="--locustfile"):
        run_sweep(_config(tmp_path, locustfile=tmp_path / "nope.py"), runner=lambda *a: 0)


def test_the_summary_comes_back_from_a_log(tmp_path: Path) -> None:
    from loraland.loadtest.errors import LoadTestError
    from loraland.loadtest.report import SweepReport
    from loraland.loadtest.sweep import SUMMARY_MARKER, summary_from_log

    report = SweepReport(
        host="http://h", api="tgi", duration_s=30, options={}, created_at="now", levels=[]
    )
    log = f"4 users for 30 s ...\n{SUMMARY_MARKER}\n{report.model_dump_json(indent=2)}\n"
    assert summary_from_log(log) == report
    with pytest.raises(LoadTestError, match="did not finish"):
        summary_from_log("4 users for 30 s ...\nTraceback ...")
