"""Run one fine-tune job end to end and report it the way the operator reads it."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loraland import __version__
from loraland.api.adapter import METADATA_FILE, PEFT_WEIGHTS_FILE, AdapterMetadata, Scores
from loraland.api.finetunejob import FineTuneJobSpec
from loraland.api.progress import TERMINATION_LOG_LIMIT, ResultScores, TrainingResult
from loraland.data.loading import DatasetBundle, load_eval_data, load_training_data
from loraland.data.records import BadRow
from loraland.settings import Settings
from loraland.storage.publish import publish_directory
from loraland.trainer.progress import ProgressReporter
from loraland.trainer.stopping import StopSignal
from loraland.trainer.workdir import default_work_dir

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class RunOptions:
    job_name: str | None = None
    work_dir: Path | None = None
    progress_file: Path | None = None
    result_file: Path | None = None


def adapter_name(spec: FineTuneJobSpec, job_name: str | None) -> str:
    if spec.output.adapter_name:
        return spec.output.adapter_name
    if job_name:
        return job_name
    tail = spec.output.uri.rstrip("/").rsplit("/", 1)[-1]
    return tail or "adapter"


def report_bad_rows(bad: list[BadRow], log: Log, limit: int = 10) -> None:
    if not bad:
        return
    log(f"{len(bad)} bad rows skipped:")
    for row in bad[:limit]:
        log(f"  {row}")
    if len(bad) > limit:
        log(f"  ... and {len(bad) - limit} more")


def evaluation_data(
    spec: FineTuneJobSpec, bundle: DatasetBundle, settings: Settings
) -> DatasetBundle:
    """The task's eval set, or the held-out rows of the training data (see data.loading)."""
    assert spec.evaluation is not None
    task = spec.evaluation.task or spec.dataset.task
    if task is not None and task != spec.dataset.task:
        return load_eval_data(task, settings, max_samples=spec.evaluation.max_samples)
    return bundle


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def result_text(result: TrainingResult) -> str:
    """Compact JSON that fits the kubelet's termination-log limit."""
    line = result.to_line()
    if len(line.encode()) > TERMINATION_LOG_LIMIT:
        line = result.model_copy(update={"scores": None}).to_line()
    return line


def run_finetune(
    spec: FineTuneJobSpec,
    settings: Settings,
    options: RunOptions,
    reporter: ProgressReporter,
    log: Log = _stderr,
    stop: StopSignal | None = None,
) -> TrainingResult:
    # Imported here: torch and transformers load only when a job really runs.
    from loraland.evaluation.scoring import Variant, metric_config, score_variants
    from loraland.trainer.run import base_model_uri, preflight, train

    preflight(spec)
    bundle = load_training_data(spec.dataset, spec.training.seed, settings)
    report_bad_rows(bundle.bad_rows, log)
    log(
        f"data: {len(bundle.train)} training and {len(bundle.eval)} evaluation examples "
        f"from {bundle.source}"
    )
    eval_bundle = evaluation_data(spec, bundle, settings) if spec.evaluation else None
    work_dir = options.work_dir or default_work_dir(settings, spec)
    log(f"work dir: {work_dir}")
    reporter.phase("loading")
    trained = train(spec, bundle, settings, work_dir, reporter.emit, log, stop)
    name = adapter_name(spec, options.job_name)

    scores: Scores | None = None
    if spec.evaluation is not None and eval_bundle is not None:
        evaluation = spec.evaluation
        examples = eval_bundle.eval[: evaluation.max_samples]
        if not examples:
            log("evaluation skipped: no evaluation examples (set dataset.evalFraction or a task)")
        else:
            reporter.phase("evaluating")
            config = metric_config(eval_bundle, evaluation.metric)
            task = eval_bundle.task
            variants = [Variant(name, spec.output.uri, "default")]
            if evaluation.compare_base:
                variants.insert(0, Variant("base", base_model_uri(spec), None))
            longest = max(len(trained.tokenizer(e.completion)["input_ids"]) for e in examples)
            results = score_variants(
                trained.model,
                trained.tokenizer,
                examples,
                config,
                variants,
                chat=spec.dataset.chat_template,
                max_new_tokens=evaluation.max_new_tokens
                or (task.max_new_tokens if task else longest + 8),
                batch_size=evaluation.batch_size,
            )
            by_label = {r.label: r.score for r in results}
            scores = Scores(
                task=(task.name if task else "held-out"),
                metric=config.metric,
                base=by_label.get("base"),
                adapter=by_label[name],
                samples=len(examples),
            )
            base_text = "-" if scores.base is None else f"{scores.base:.3f}"
            log(
                f"scores ({scores.task}, {scores.metric}, {scores.samples} samples): "
                f"base {base_text}, adapter {scores.adapter:.3f}"
            )

    reporter.phase("publishing")
    weights = trained.adapter_dir / PEFT_WEIGHTS_FILE
    sha, size = _sha256(weights), weights.stat().st_size
    metadata = AdapterMetadata(
        name=name,
        base_model=spec.base_model.uri,
        base_model_revision=spec.base_model.revision,
        task=spec.dataset.task,
        dataset=bundle.source,
        hyperparameters=trained.hyperparameters,
        scores=scores,
        sha256=sha,
        size_bytes=size,
        loraland_version=__version__,
        prompt_template=bundle.template,
        chat_template=spec.dataset.chat_template,
        steps=trained.steps,
        train_samples=trained.train_samples,
        truncated_samples=trained.truncated,
        bad_rows=len(bundle.bad_rows),
    )
    (trained.adapter_dir / METADATA_FILE).write_text(metadata.model_dump_json(indent=2) + "\n")
    published = publish_directory(trained.adapter_dir, spec.output.uri, settings)
    log(f"adapter published to {published}")
    result = TrainingResult(
        adapter_uri=published,
        sha256=sha,
        size_bytes=size,
        steps=trained.steps,
        scores=None
        if scores is None
        else ResultScores(
            task=scores.task,
            metric=scores.metric,
            base=scores.base,
            adapter=scores.adapter,
            samples=scores.samples,
        ),
        truncated_samples=trained.truncated,
        bad_rows=len(bundle.bad_rows),
        train_samples=trained.train_samples,
        resumed_from_step=trained.resumed_from,
    )
    reporter.phase("done")
    line = result_text(result)
    if options.result_file is not None:
        options.result_file.parent.mkdir(parents=True, exist_ok=True)
        options.result_file.write_text(line)
    reporter.result_line(line)
    return result


def parse_result_line(line: str) -> TrainingResult:
    return TrainingResult.model_validate(json.loads(line))
