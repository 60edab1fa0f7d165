"""``loraland demo``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from loraland.demo.plan import DemoPlan, Step, leaderboard, percent

console = Console()


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Report directory.")] = Path("demo-out"),
    quick: Annotated[bool, typer.Option(help="Smaller runs: a few minutes in all.")] = False,
    fresh: Annotated[bool, typer.Option(help="Redo everything, reusing nothing.")] = False,
    step: Annotated[
        list[Step] | None,
        typer.Option(help="Run only these steps (repeatable): train, serve, loadtest, report."),
    ] = None,
    tasks: Annotated[str, typer.Option(help="Comma-separated synthetic tasks.")] = "",
) -> None:
    """Fine-tune, score, serve and load-test adapters on the embedded model; write a report.

    `serve` alone keeps the server running until Ctrl-C; `loadtest` starts its own server.
    """
    from loraland.demo import run

    plan = DemoPlan.quick() if quick else DemoPlan.full()
    if tasks:
        plan = plan.model_copy(update={"tasks": [t.strip() for t in tasks.split(",") if t.strip()]})
    steps = set(step or []) or {Step.TRAIN, Step.LOADTEST, Step.REPORT}
    out = out.absolute()
    if fresh:
        run.reset(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    echo = console.print

    if Step.TRAIN in steps:
        metadata = run.train(plan, out, echo)
        table = Table(title="leaderboard (scores in %)")
        for column in ("task", "metric", "base", "adapter", "gain"):
            table.add_column(column, justify="left" if column in {"task", "metric"} else "right")
        for row in leaderboard(metadata):
            table.add_row(
                row.task,
                row.metric,
                percent(row.base),
                percent(row.adapter),
                percent(row.gain, signed=True),
            )
        console.print(table)
    if Step.LOADTEST in steps:
        with run.serving(plan.tasks, out, echo) as url:
            run.loadtest(plan, out, url, echo)
    elif Step.SERVE in steps:
        with run.serving(plan.tasks, out, echo) as url:
            echo(
                f"try: curl {url}/generate -H 'content-type: application/json' -d "
                f'\'{{"inputs": "...", "parameters": {{"adapter_id": "{plan.tasks[0]}"}}}}\''
            )
            echo("Ctrl-C stops the server")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    if Step.REPORT in steps:
        report, _ = run.write_report(plan, out)
        echo(f"report: {report}  ({time.monotonic() - started:.0f} s)")
