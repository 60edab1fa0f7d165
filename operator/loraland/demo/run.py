"""The demo's steps: subprocesses of the public CLI, a health wait, files and plots."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from loraland.api.adapter import METADATA_FILE, AdapterMetadata
from loraland.demo.plan import (
    DemoPlan,
    LeaderboardRow,
    adapter_dir,
    finetune_args,
    leaderboard,
    loadtest_markdown,
    report_markdown,
    serve_args,
    sweep_args,
)
from loraland.loadtest.report import SUMMARY_JSON, SweepReport
from loraland.serving.process import ServerStartError, free_port, stop, wait_until_healthy

Echo = Callable[[str], None]


class DemoError(Exception):
    """A demo step failed; the message says which and where its log is."""


def _loraland(args: Sequence[str], log: Path | None = None) -> None:
    command = [sys.executable, "-m", "loraland.cli", *args]
    if log is None:
        # The user watches this one: progress bars and tables go straight to the terminal.
        code = subprocess.call(command)
    else:
        with log.open("w") as stream:
            code = subprocess.call(command, stdout=stream, stderr=subprocess.STDOUT)
    if code != 0:
        where = f"; see {log}" if log else ""
        raise DemoError(f"`loraland {' '.join(args[:2])}` exited with {code}{where}")


def trained(out: Path, task: str) -> AdapterMetadata | None:
    """The adapter's metadata if a previous run already trained and scored it."""
    path = adapter_dir(out, task) / METADATA_FILE
    if not path.is_file():
        return None
    meta = AdapterMetadata.model_validate_json(path.read_text())
    return meta if meta.scores is not None else None


def train(plan: DemoPlan, out: Path, echo: Echo) -> list[AdapterMetadata]:
    results = []
    for number, task in enumerate(plan.tasks, start=1):
        meta = trained(out, task)
        if meta is None:
            echo(f"[{number}/{len(plan.tasks)}] fine-tuning an adapter on '{task}'")
            _loraland(finetune_args(plan, task, out))
            meta = trained(out, task)
            if meta is None:
                raise DemoError(
                    f"training '{task}' wrote no scored adapter in {adapter_dir(out, task)}"
                )
        else:
            echo(f"[{number}/{len(plan.tasks)}] '{task}': reusing {adapter_dir(out, task)}")
        results.append(meta)
    return results


@contextmanager
def serving(tasks: Sequence[str], out: Path, echo: Echo, timeout_s: float = 300) -> Iterator[str]:
    """Run one ``loraland serve`` with every adapter until the block ends; yield its URL."""
    port = free_port()
    log = out / "logs" / "serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as stream:
        process = subprocess.Popen(
            [sys.executable, "-m", "loraland.cli", *serve_args(tasks, out, port)],
            stdout=stream,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_healthy(url, process, log, timeout_s)
        except ServerStartError as exc:
            raise DemoError(str(exc).splitlines()[0]) from None
        adapters = httpx.get(f"{url}/admin/adapters", timeout=10).json()
        echo(f"serving the base model and {len(tasks)} adapters at {url}")
        echo(f"playground (open in a browser): {url}/playground")
        (out / "logs" / "adapters.json").write_text(json.dumps(adapters, indent=2))
        yield url
    finally:
        stop(process)


def loadtest(plan: DemoPlan, out: Path, host: str, echo: Echo) -> None:
    levels = ", ".join(str(u) for u in plan.users)
    echo(f"Locust sweep over {levels} users, {plan.level_seconds} s each, adapters mixed uniformly")
    _loraland(sweep_args(plan, plan.tasks, host, out), log=out / "logs" / "loadtest.log")


def _score_plot(rows: Sequence[LeaderboardRow], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    positions = range(len(rows))
    ax.bar([p - 0.2 for p in positions], [100 * (r.base or 0) for r in rows], 0.4, label="base")
    ax.bar([p + 0.2 for p in positions], [100 * r.adapter for r in rows], 0.4, label="adapter")
    ax.set_xticks(list(positions), [f"{r.task}\n({r.metric})" for r in rows])
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Base model vs LoRA adapter, per task")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(plan: DemoPlan, out: Path) -> tuple[Path, list[LeaderboardRow]]:
    metadata = [m for m in (trained(out, task) for task in plan.tasks) if m is not None]
    if not metadata:
        raise DemoError(f"no trained adapters under {out / 'adapters'}: run the train step first")
    rows = leaderboard(metadata)
    plots_dir = out / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    _score_plot(rows, plots_dir / "scores.png")
    plots = ["plots/scores.png"]
    summary = None
    sweep_json = out / "loadtest" / SUMMARY_JSON
    if sweep_json.is_file():
        summary = loadtest_markdown(SweepReport.model_validate_json(sweep_json.read_text()))
        for name in ("time_to_first_token.png", "tokens_per_second.png"):
            if (out / "loadtest" / "plots" / name).is_file():
                plots.append(f"loadtest/plots/{name}")
    report = out / "report.md"
    report.write_text(report_markdown(rows, summary, plots))
    return report, rows


def reset(out: Path) -> None:
    """``--fresh``: forget adapters, reports and the trainer's checkpoints for them."""
    if out.exists():
        shutil.rmtree(out)
