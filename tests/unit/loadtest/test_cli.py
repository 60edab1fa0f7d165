"""``loraland loadtest ...``: user mistakes are one line and exit code 2; files get written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from loraland.cli import main
from loraland.loadtest.report import load_report

DATA = Path(__file__).parent / "data"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--users", "0"], "--users: '0' is not a positive whole number"),
        (["--duration", "soon"], "--duration"),
        (["--max-new-tokens", "20-10"], "--max-new-tokens: '20-10': range 20-10 ends below"),
        (["--adapters", "a,a"], "--adapters: adapter id 'a' is listed twice"),
        (["--api", "soap"], "--api"),
        (["--prompt-file", "/nonexistent/p.txt"], "--prompt-file: /nonexistent/p.txt does not"),
        ([], "--host: cannot reach http://127.0.0.1:9"),
    ],
)
def test_sweep_user_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    code, _, err = _run(
        capsys, "loadtest", "sweep", "--host", "http://127.0.0.1:9", "--out", str(tmp_path), *argv
    )
    assert code == 2
    assert message in " ".join(err.split())
    assert "Traceback" not in err


def _level(folder: Path, users: int) -> None:
    level = folder / f"users-{users:03d}"
    level.mkdir(parents=True)
    shutil.copy(DATA / "real_stats.csv", level / "locust_stats.csv")
    record = (DATA / "real_run.json").read_text().replace('"users": 2', f'"users": {users}')
    (level / "locust_run.json").write_text(record)


def test_report_then_compare(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for name, levels in (("a", [1, 2]), ("b", [2, 4])):
        for users in levels:
            _level(tmp_path / name, users)
        code, out, _ = _run(capsys, "loadtest", "report", str(tmp_path / name))
        assert code == 0 and "summary.md" in out
        assert [lvl.users for lvl in load_report(tmp_path / name).levels] == levels
        assert load_report(tmp_path / name).host == "http://127.0.0.1:18080"

    out_dir = tmp_path / "cmp"
    labels = ["--label", "before", "--label", "after"]
    folders = [str(tmp_path / "a"), str(tmp_path / "b")]
    code, out, _ = _run(capsys, "loadtest", "compare", *folders, "--out", str(out_dir), *labels)
    assert code == 0
    assert "before (A) vs after (B)" in out and "## 2 users" in out and "| 1.00x |" in out
    assert (out_dir / "compare.md").read_text().count("![compare_") == 5
    assert len(list((out_dir / "plots").glob("compare_*.png"))) == 5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["loadtest", "compare", "{tmp}/x", "{tmp}/y"], "not a sweep folder: summary.json is"),
        (["loadtest", "report", "{tmp}/x"], "is not a folder"),
        (["loadtest", "report", "{tmp}"], "holds no users-NNN/ level folders"),
        (["loadtest", "k8s", "--host", "http://a", "--workers", "0"], "--workers: Input should"),
        (["loadtest", "k8s", "--host", "http://a", "--name", "Not_OK"], "--name: String should"),
    ],
)
def test_other_user_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    code, _, err = _run(capsys, *(a.replace("{tmp}", str(tmp_path)) for a in argv))
    assert code == 2 and message in " ".join(err.split())
