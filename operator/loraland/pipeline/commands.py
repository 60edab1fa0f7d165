"""``loraland finetune``: the same entrypoint locally and in a FineTuneJob pod."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer

from loraland.settings import Settings
from loraland.storage.builtin import DEFAULT_BASE_MODEL


def finetune_command(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="FineTuneJob manifest or bare spec (YAML/JSON)."),
    ] = None,
    base_model: Annotated[
        str | None, typer.Option("--base-model", help="Overrides baseModel.uri.")
    ] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Overrides dataset.uri.")] = None,
    task: Annotated[str | None, typer.Option("--task", help="Overrides dataset.task.")] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Overrides output.uri.")
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=1, help="training.maxSteps")
    ] = None,
    epochs: Annotated[float | None, typer.Option("--epochs", help="training.epochs")] = None,
    learning_rate: Annotated[
        float | None, typer.Option("--learning-rate", help="training.learningRate")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="training.batchSize")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="training.seed")] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option("--checkpoint-every", min=0, help="training.checkpointEverySteps")
    ] = None,
    eval_task: Annotated[
        str | None, typer.Option("--eval-task", help="Overrides evaluation.task.")
    ] = None,
    no_eval: Annotated[bool, typer.Option("--no-eval", help="Skip evaluation.")] = False,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Any field by its path: --set training.warmupRatio=0.1 (repeatable)."
        ),
    ] = None,
    work_dir: Annotated[
        Path | None,
        typer.Option(
            "--work-dir", help="Checkpoints live here (default: cache, keyed by the job)."
        ),
    ] = None,
    progress_file: Annotated[
        Path | None, typer.Option("--progress-file", help="Append progress JSON lines.")
    ] = None,
    result_file: Annotated[
        Path | None,
        typer.Option("--result-file", help="Write the result JSON (e.g. /dev/termination-log)."),
    ] = None,
) -> None:
    """Train a LoRA adapter as FILE (a FineTuneJob or its spec) says; flags override it."""
    flags = {
        "baseModel.uri": base_model,
        "dataset.uri": dataset,
        "dataset.task": task,
        "output.uri": output,
        "training.maxSteps": max_steps,
        "training.epochs": epochs,
        "training.learningRate": learning_rate,
        "training.batchSize": batch_size,
        "training.seed": seed,
        "training.checkpointEverySteps": checkpoint_every,
        "evaluation.task": eval_task,
    }
    overrides: list[tuple[str, Any]] = [(p, v) for p, v in flags.items() if v is not None]
    if max_steps is not None:
        overrides.append(("training.epochs", None))
    elif epochs is not None:
        overrides.append(("training.maxSteps", None))
    if no_eval:
        overrides.append(("evaluation", None))
    try:
        _run(ctx.obj.settings, file, sets or [], overrides, work_dir, progress_file, result_file)
    except Exception as exc:
        if result_file is not None:
            write_failure(result_file, exc)
        raise


def _run(
    settings: Settings,
    file: Path | None,
    sets: list[str],
    overrides: list[tuple[str, Any]],
    work_dir: Path | None,
    progress_file: Path | None,
    result_file: Path | None,
) -> None:
    from loraland.pipeline.finetune import RunOptions, run_finetune
    from loraland.pipeline.jobfile import build_spec, parse_assignment, read_document
    from loraland.trainer.progress import ProgressReporter
    from loraland.trainer.stopping import stop_on_sigterm

    document = read_document(file) if file else {"baseModel": {"uri": DEFAULT_BASE_MODEL}}
    # --set comes first so that the named flags win over it.
    name, spec = build_spec(document, [parse_assignment(text) for text in sets] + overrides)
    options = RunOptions(
        job_name=name, work_dir=work_dir, progress_file=progress_file, result_file=result_file
    )
    with stop_on_sigterm() as stop, ProgressReporter(progress_file) as reporter:
        run_finetune(spec, settings, options, reporter, stop=stop)


def write_failure(path: Path, exc: BaseException) -> None:
    """Leave the reason where the operator looks (the termination log), then fail as usual."""
    from loraland.api.progress import TrainingFailure

    message = str(exc).strip() or type(exc).__name__
    failure = TrainingFailure(reason=type(exc).__name__, message=message[:3000])
    with contextlib.suppress(OSError):  # reporting must not hide the original error
        path.write_text(failure.to_line())
