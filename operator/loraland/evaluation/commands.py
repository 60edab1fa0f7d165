"""``loraland eval``: score a base model and its adapters on one task."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from loraland.api.evaluation import EvalReport, ModelResult, SampleOutput

console = Console(stderr=True)


def print_table(report: EvalReport, out: Console) -> None:
    table = Table(title=f"{report.task}: {report.metric} on {report.samples} samples")
    for column in ("model", "score", "vs base", "seconds"):
        table.add_column(column, justify="left" if column == "model" else "right")
    base = next((r.score for r in report.results if r.name == "base"), None)
    for result in report.results:
        delta = (
            "" if base is None or result.name == "base" else f"{(result.score - base) * 100:+.1f}"
        )
        table.add_row(result.name, f"{result.score * 100:.1f}", delta, f"{result.seconds:.1f}")
    out.print(table)


def eval_command(
    ctx: typer.Context,
    task: Annotated[str, typer.Option("--task", "-t", help="Task name (see --list-tasks).")],
    base: Annotated[
        str, typer.Option("--base", help="Base model URI.")
    ] = "builtin://smollm2-135m-instruct",
    adapters: Annotated[
        list[str] | None, typer.Option("--adapter", "-a", help="Adapter URI (repeatable).")
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", help="Task data: a file, directory or URI.")
    ] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="Split to read (default: the task's).")
    ] = None,
    max_samples: Annotated[int, typer.Option("--max-samples", min=1)] = 100,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 16,
    max_new_tokens: Annotated[int | None, typer.Option("--max-new-tokens", min=1)] = None,
    chat_template: Annotated[
        bool | None,
        typer.Option(
            "--chat-template/--no-chat-template",
            help="Use the base model's chat template (default: as the first adapter was trained).",
        ),
    ] = None,
    skip_base: Annotated[
        bool, typer.Option("--skip-base", help="Do not score the base model.")
    ] = False,
    precision: Annotated[str, typer.Option("--precision")] = "auto",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="JSON report path (default: eval-<task>.json)."),
    ] = None,
    show: Annotated[int, typer.Option("--show", min=0, help="Example predictions to print.")] = 3,
) -> None:
    """Score the base model and each adapter on TASK; print a table and write JSON."""
    from loraland.data.loading import load_eval_data
    from loraland.evaluation.adapters import attach_adapters, open_adapter
    from loraland.evaluation.metrics import MetricConfig
    from loraland.evaluation.scoring import Variant, metric_config, score_variants
    from loraland.modeling import load_base_model

    settings = ctx.obj.settings
    if skip_base and not adapters:
        raise typer.BadParameter("nothing to score: --skip-base needs at least one --adapter")
    sources = [open_adapter(uri, settings) for uri in adapters or []]
    first_meta = sources[0].metadata if sources else None
    template = first_meta.prompt_template if first_meta and first_meta.task == task else None
    chat = (
        chat_template
        if chat_template is not None
        else bool(first_meta and first_meta.chat_template)
    )
    bundle = load_eval_data(
        task, settings, data_uri=data, split=split, template=template, max_samples=max_samples
    )
    for bad in bundle.bad_rows[:5]:
        console.print(f"[yellow]bad row[/yellow] {bad}", highlight=False)
    config: MetricConfig = metric_config(bundle)
    definition = bundle.task
    assert definition is not None
    with console.status(f"loading {base}"):
        loaded = load_base_model(base, settings, precision=precision)  # type: ignore[arg-type]
        model, variants = attach_adapters(loaded.model, sources) if sources else (loaded.model, [])
    rows = ([] if skip_base else [Variant("base", base, None)]) + variants
    total = len(bundle.eval) * len(rows)
    done = 0

    with console.status("scoring") as status:

        def progress(label: str, count: int) -> None:
            nonlocal done
            done += count
            status.update(f"scoring {label}: {done}/{total}")

        scores = score_variants(
            model,
            loaded.tokenizer,
            bundle.eval,
            config,
            rows,
            chat=chat,
            max_new_tokens=max_new_tokens or definition.max_new_tokens,
            batch_size=batch_size,
            on_batch=progress,
        )
    report = EvalReport(
        task=task,
        metric=config.metric,
        source=bundle.source,
        samples=len(bundle.eval),
        base_model=base,
        results=[
            ModelResult(
                name=s.label, uri=s.uri, score=s.score, samples=s.samples, seconds=s.seconds
            )
            for s in scores
        ],
        examples=[
            SampleOutput(
                prompt=example.prompt,
                reference=example.completion,
                predictions={s.label: s.predictions[i] for s in scores},
            )
            for i, example in enumerate(bundle.eval[:show])
        ],
    )
    out = Console()
    print_table(report, out)
    for sample in report.examples:
        out.print(f"[dim]{sample.prompt!r} -> expected {sample.reference!r}[/dim]", highlight=False)
        for label, text in sample.predictions.items():
            out.print(f"  {label}: {text.strip()!r}", highlight=False)
    path = output or Path(f"eval-{task}.json")
    path.write_text(report.model_dump_json(by_alias=True, indent=2) + "\n")
    out.print(f"report: {path}")


def list_tasks_command() -> None:
    """List the tasks `loraland eval --task` and `dataset.task` accept."""
    from loraland.data.registry import list_tasks

    table = Table(title="tasks")
    for column in ("name", "kind", "metric", "data", "description"):
        table.add_column(column)
    for task in list_tasks():
        table.add_row(task.name, task.kind, task.metric, task.origin, task.description)
    Console().print(table)
