"""From a DatasetSpec (or a task name) to training and evaluation examples.

Rules, in order:

* ``dataset.task`` supplies the template, fields, ``prepare`` and metric; explicit spec
  fields override them. Without ``dataset.uri`` the task supplies the data too: a
  synthetic task generates it, a hub task reads its ``hf://`` dataset.
* Evaluation examples come from the eval split when the source has one (a synthetic
  task's fixed eval set, a hub split, or a directory's ``<split>.*`` files); otherwise
  ``evalFraction`` of the shuffled rows are held out and never trained on.
* ``maxSamples`` caps the rows after a seeded shuffle. Evaluation sets are shuffled with
  a fixed seed so every model is scored on the same samples, whatever the training seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loraland.api.finetunejob import DatasetSpec
from loraland.data.errors import DataError
from loraland.data.examples import Example, build_examples, hold_out, infer_labels, shuffled
from loraland.data.records import BadRow, DataSource, Row, RowTable, open_source
from loraland.data.registry import get_task
from loraland.data.synthetic import synthetic_rows
from loraland.data.tasks import TaskDefinition
from loraland.data.templates import check_fields
from loraland.settings import Settings

#: Seed of every evaluation set, so base and adapters always see the same samples.
EVAL_SEED = 0


@dataclass
class DatasetBundle:
    source: str
    template: str
    output_field: str
    task: TaskDefinition | None
    train: list[Example] = field(default_factory=list)
    eval: list[Example] = field(default_factory=list)
    bad_rows: list[BadRow] = field(default_factory=list)
    labels: tuple[str, ...] = ()


def effective_template(spec: DatasetSpec, task: TaskDefinition | None) -> str:
    if spec.prompt_template:
        return spec.prompt_template
    if task is not None:
        return task.prompt_template
    return "{" + (spec.input_field or "input") + "}"


def _synthetic_table(task: TaskDefinition, rows: list[dict[str, Any]], split: str) -> RowTable:
    table = RowTable(source=f"task {task.name} ({split})", fields=list(task.fields))
    table.rows = [Row(f"{task.name} {split} #{i}", row) for i, row in enumerate(rows, start=1)]
    return table


def _examples(
    table: RowTable, template: str, output_field: str, task: TaskDefinition | None
) -> tuple[list[Example], list[BadRow]]:
    available = list(task.fields) if task is not None and task.prepare else table.fields
    if table.rows:
        # JSONL has no header: only a field that no row has is an error; a row missing
        # a field others have is a bad row.
        check_fields(template, available, table.source)
        if output_field not in available:
            raise DataError(
                f"dataset.outputField '{output_field}' is not a field of {table.source} "
                f"(fields: {', '.join(sorted(available))})"
            )
    examples, bad = build_examples(
        table.rows, template, output_field, task.prepare if task is not None else None
    )
    bad = table.bad_rows + bad
    if not examples:
        first = f"; first: {bad[0]}" if bad else ""
        raise DataError(f"{table.source}: no usable rows ({len(bad)} bad{first})")
    return examples, bad


def _eval_split(spec: DatasetSpec, task: TaskDefinition | None, source: DataSource) -> str | None:
    if spec.eval_split:
        return spec.eval_split  # explicit: a missing split is an error, reported by read()
    if task is not None and task.source is not None and source.has_splits:
        default = task.source.eval_split
        return default if source.split_exists(default) else None
    return None


def load_training_data(spec: DatasetSpec, seed: int, settings: Settings) -> DatasetBundle:
    task = get_task(spec.task) if spec.task else None
    template = effective_template(spec, task)
    output_field = spec.output_field or (task.output_field if task else "output")
    bundle = DatasetBundle(source="", template=template, output_field=output_field, task=task)

    if spec.uri is None and task is not None and task.synthetic:
        eval_rows = synthetic_rows(task, task.eval_size, EVAL_SEED, "eval")
        exclude = {str(row[task.fields[0]]) for row in eval_rows}
        count = spec.max_samples or task.train_size
        train_rows = synthetic_rows(task, count, seed, "train", exclude=exclude)
        bundle.source = f"task://{task.name}"
        bundle.train, bad = _examples(
            _synthetic_table(task, train_rows, "train"), template, output_field, task
        )
        bundle.eval, _ = _examples(
            _synthetic_table(task, eval_rows, "eval"), template, output_field, task
        )
        bundle.bad_rows = bad
    else:
        if spec.uri is not None:
            source = open_source(spec.uri, settings, spec.format, spec.subset)
        else:
            assert task is not None and task.source is not None
            source = open_source(
                task.source.uri, settings, subset=spec.subset or task.source.subset
            )
        bundle.source = source.uri
        cache = settings.cache_dir / "datasets"
        examples, bad = _examples(source.read(spec.split, cache), template, output_field, task)
        examples = shuffled(examples, seed)[: spec.max_samples]
        eval_split = _eval_split(spec, task, source)
        if eval_split is not None:
            held, eval_bad = _examples(source.read(eval_split, cache), template, output_field, task)
            bundle.train, bundle.eval = examples, shuffled(held, EVAL_SEED)
            bad += eval_bad
        else:
            bundle.train, bundle.eval = hold_out(examples, spec.eval_fraction)
        bundle.bad_rows = bad
    if not bundle.train:
        raise DataError(f"{bundle.source}: nothing left to train on after the eval split")
    bundle.labels = task.labels if task else infer_labels([*bundle.train, *bundle.eval])
    return bundle


def load_eval_data(
    task_name: str,
    settings: Settings,
    *,
    data_uri: str | None = None,
    split: str | None = None,
    template: str | None = None,
    max_samples: int | None = None,
) -> DatasetBundle:
    """The evaluation set of a task: its fixed synthetic set, its hub split, or a user's file.

    A single file given as ``data_uri`` is read whole (all of it is evaluation data).
    """
    task = get_task(task_name)
    prompt = template or task.prompt_template
    bundle = DatasetBundle(source="", template=prompt, output_field=task.output_field, task=task)
    if data_uri is None and task.synthetic:
        # Capped at eval_size: training data excludes exactly these rows, not more.
        count = min(max_samples or task.eval_size, task.eval_size)
        rows = synthetic_rows(task, count, EVAL_SEED, "eval")
        bundle.source = f"task://{task.name}"
        bundle.eval, bundle.bad_rows = _examples(
            _synthetic_table(task, rows, "eval"), prompt, task.output_field, task
        )
    else:
        uri = data_uri or (task.source.uri if task.source else None)
        if uri is None:
            raise DataError(f"task '{task_name}' needs data: pass its files")
        subset = task.source.subset if task.source else None
        source = open_source(uri, settings, subset=subset)
        wanted = split or (task.source.eval_split if task.source else "validation")
        table = source.read(wanted if source.has_splits else "", settings.cache_dir / "datasets")
        bundle.source = uri
        examples, bundle.bad_rows = _examples(table, prompt, task.output_field, task)
        bundle.eval = shuffled(examples, EVAL_SEED)[:max_samples]
    bundle.labels = task.labels
    return bundle
