"""Training and evaluation data, shared by the trainer and the evaluation harness.

Pure Python (no torch): reading rows from JSONL, CSV, Parquet and hub datasets with the
location of every row, prompt templates, the task registry (synthetic tasks generated
here, plus definitions of real LoRA Land tasks), and the train/eval split. It sits below
both :mod:`loraland.trainer` and :mod:`loraland.evaluation`, which never import each other.
"""

from loraland.data.errors import DataError

__all__ = ["DataError"]
