"""What a task is: data + prompt template + metric + how to read the answer.

A task either generates its rows (synthetic tasks, deterministic for a seed) or names
a dataset (``hf://`` by default; a user may point at local files with the same columns)
and a ``prepare`` function that turns a raw row into template fields plus ``output``.
The metric and answer parsing live in :mod:`loraland.evaluation`; a task names them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from loraland.api.finetunejob import Metric

Kind = Literal["classification", "math", "extraction", "generation", "regression"]
Generator = Callable[[random.Random], dict[str, Any]]
Prepare = Callable[[Mapping[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class HubSource:
    uri: str
    subset: str | None = None
    train_split: str = "train"
    eval_split: str = "validation"


@dataclass(frozen=True)
class TaskDefinition:
    name: str
    kind: Kind
    description: str
    prompt_template: str
    metric: Metric
    #: Fields a row has after ``prepare`` (or as generated), including the output field.
    fields: tuple[str, ...]
    output_field: str = "output"
    #: The answer set of a classification task, used to read labels out of free text.
    labels: tuple[str, ...] = ()
    #: (low, high) of a regression target; the score is 1 - |error| / (high - low).
    value_range: tuple[float, float] | None = None
    max_new_tokens: int = 16
    #: Read only the first line of a generation (and stop generating at a newline).
    single_line: bool = True
    generate: Generator | None = None
    source: HubSource | None = None
    prepare: Prepare | None = None
    train_size: int = 2000
    eval_size: int = 200

    @property
    def synthetic(self) -> bool:
        return self.generate is not None

    @property
    def origin(self) -> str:
        if self.source is not None:
            return self.source.uri + (f" ({self.source.subset})" if self.source.subset else "")
        return "synthetic"
