"""Score one loaded model, with and without its adapters, on one evaluation set."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

from loraland.api.finetunejob import Metric
from loraland.data.examples import Example
from loraland.data.loading import DatasetBundle
from loraland.data.prompting import encode_prompt
from loraland.evaluation.generate import generate_batched
from loraland.evaluation.metrics import MetricConfig, mean_score, score


@dataclass(frozen=True)
class Variant:
    """One row of a comparison: the base (adapter None) or a loaded adapter by name."""

    label: str
    uri: str
    adapter: str | None


@dataclass
class VariantScore:
    label: str
    uri: str
    score: float
    samples: int
    seconds: float
    predictions: list[str]
    per_sample: list[float]


def metric_config(bundle: DatasetBundle, metric: Metric | None = None) -> MetricConfig:
    """The task's metric, or ``metric`` for a plain dataset (regression range from the data)."""
    task = bundle.task
    if task is not None and metric is None:
        return MetricConfig(task.metric, task.labels, task.value_range, task.single_line)
    chosen: Metric = metric or (task.metric if task else "accuracy")
    value_range = task.value_range if task else None
    if chosen == "regression" and value_range is None:
        values = [float(e.completion) for e in bundle.eval if _is_number(e.completion)]
        value_range = (min(values), max(values)) if values else (0.0, 1.0)
    single_line = all("\n" not in e.completion for e in bundle.eval)
    return MetricConfig(chosen, bundle.labels, value_range, single_line)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _variant_context(model: Any, variant: Variant) -> AbstractContextManager[Any]:
    if variant.adapter is None:
        disable = getattr(model, "disable_adapter", None)
        return disable() if disable is not None else nullcontext()
    model.set_adapter(variant.adapter)
    return nullcontext()


def score_variants(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    config: MetricConfig,
    variants: Sequence[Variant],
    *,
    chat: bool,
    max_new_tokens: int,
    batch_size: int,
    on_batch: Callable[[str, int], None] | None = None,
) -> list[VariantScore]:
    prompts = [encode_prompt(tokenizer, e.prompt, chat) for e in examples]
    references = [e.completion for e in examples]
    results = []
    for variant in variants:
        started = time.perf_counter()
        with _variant_context(model, variant):
            predictions = generate_batched(
                model,
                tokenizer,
                prompts,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                stop_at_newline=config.single_line,
                on_batch=partial(on_batch, variant.label) if on_batch else None,
            )
        per_sample = [score(config, p, r) for p, r in zip(predictions, references, strict=True)]
        results.append(
            VariantScore(
                label=variant.label,
                uri=variant.uri,
                score=mean_score(config, predictions, references),
                samples=len(examples),
                seconds=time.perf_counter() - started,
                predictions=predictions,
                per_sample=per_sample,
            )
        )
    return results
