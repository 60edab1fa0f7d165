"""The LoRA Land metric family, as pure functions of (prediction, reference).

* ``accuracy``: flexible accuracy; the answer is read with :mod:`.parsing` and compared
  with the reference's canonical form.
* ``rouge_l``: ROUGE-L F1 over lower-cased alphanumeric tokens (longest common subsequence).
* ``last_number``: the last number of the prediction equals the last number of the
  reference (GSM8K references end in ``#### <answer>``).
* ``regression``: ``max(0, 1 - |prediction - reference| / (high - low))`` on the first
  number of the prediction; no number scores 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from loraland.api.finetunejob import Metric
from loraland.evaluation.parsing import canonical, extract_answer, first_line, numbers


@dataclass(frozen=True)
class MetricConfig:
    metric: Metric
    labels: tuple[str, ...] = ()
    value_range: tuple[float, float] | None = None
    single_line: bool = True


def flexible_accuracy(
    prediction: str, reference: str, labels: Sequence[str] = (), single_line: bool = True
) -> float:
    return float(extract_answer(prediction, labels, single_line) == canonical(reference, labels))


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    pred, ref = _tokens(prediction), _tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = _lcs(pred, ref)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def last_number_match(prediction: str, reference: str) -> float:
    pred, ref = numbers(prediction), numbers(reference)
    if not pred or not ref:
        return 0.0
    return float(abs(pred[-1] - ref[-1]) < 1e-6)


def regression_score(prediction: str, reference: str, value_range: tuple[float, float]) -> float:
    low, high = value_range
    pred, ref = numbers(first_line(prediction)), numbers(reference)
    if not pred or not ref:
        return 0.0
    span = (high - low) or 1.0
    return max(0.0, 1.0 - abs(pred[0] - ref[0]) / span)


def score(config: MetricConfig, prediction: str, reference: str) -> float:
    if config.metric == "accuracy":
        return flexible_accuracy(prediction, reference, config.labels, config.single_line)
    if config.metric == "rouge_l":
        text = first_line(prediction) if config.single_line else prediction
        return rouge_l(text, reference)
    if config.metric == "last_number":
        text = first_line(prediction) if config.single_line else prediction
        return last_number_match(text, reference)
    return regression_score(prediction, reference, config.value_range or (0.0, 1.0))


def mean_score(
    config: MetricConfig, predictions: Sequence[str], references: Sequence[str]
) -> float:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        return 0.0
    return sum(score(config, p, r) for p, r in zip(predictions, references, strict=True)) / len(
        references
    )
