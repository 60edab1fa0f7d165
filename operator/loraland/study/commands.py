"""``loraland study -f study.yaml`` and ``loraland study report``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from loraland.api.study import StudySpecError

console = Console()

study_app = typer.Typer(
    help="Run a FineTuneStudy on this machine and write its LoRA Land style report.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@study_app.callback()
def study(
    ctx: typer.Context,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="A FineTuneStudy manifest (YAML).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Results directory (default: study-<name>).")
    ] = None,
) -> None:
    """Train every run of FILE one after another (reusing finished ones), then report.

    Adapters, logs and checkpoints go under OUT/runs/<run>; the table to
    OUT/results.json; the report to OUT/report.md with OUT/heatmap.png.
    """
    if ctx.invoked_subcommand is not None:
        return
    if file is None:
        raise StudySpecError("give the study: loraland study -f study.yaml")
    from loraland.study.local import read_study, run_study, write_report
    from loraland.study.report import base_means_markdown, variants_markdown

    name, spec = read_study(file)
    target = (out or Path(f"study-{name}")).absolute()
    started = time.monotonic()
    table = run_study(name, spec, target, console.print, tty=sys.stdout.isatty())
    report = write_report(table, target)
    console.print(base_means_markdown(table), markup=False, highlight=False)
    if table.variants:
        console.print("")
        console.print(variants_markdown(table), markup=False, highlight=False)
    console.print(f"report: {report}  ({time.monotonic() - started:.0f} s)")


@study_app.command("report")
def report(
    results: Annotated[
        Path | None,
        typer.Option(
            "--results",
            help="A results.json: from `loraland study -f` or a study's ConfigMap "
            "(kubectl get cm NAME-results -o jsonpath='{.data.results\\.json}').",
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where report.md and heatmap.png go.")
    ] = Path("."),
) -> None:
    """Write the LoRA Land style report (heatmap, per-base means, the questions answered)."""
    from loraland.study.local import RESULTS_FILE, load_table, write_report

    table = load_table(results or out / RESULTS_FILE)
    path = write_report(table, out.absolute())
    console.print(f"report: {path}")
