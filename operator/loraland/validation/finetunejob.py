"""What makes a FineTuneJob spec unrunnable, known before any pod starts.

Each rule mirrors a check a pod would otherwise hit later: the trainer's URI parsing, its
task registry lookup and prompt-template check (loraland.data), its LoRA target and QLoRA
checks (loraland.trainer.targets), or the API server refusing a child the operator builds
(label keys, tolerations, image names).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from loraland.api.finetunejob import FineTuneJobSpec
from loraland.data.errors import DataError
from loraland.data.registry import TASKS
from loraland.data.tasks import TaskDefinition
from loraland.data.templates import placeholders
from loraland.storage.errors import StorageError
from loraland.storage.uri import Scheme, parse_uri
from loraland.validation import fields
from loraland.validation.problems import Problem
from loraland.validation.spec import Meta, SpecValidator

#: PEFT matches target modules by name (or name suffix); a name is a dotted module path.
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
_SUFFIX_FORMAT = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}


def _unknown_task(path: str, name: str) -> Problem:
    return Problem(path, f"unknown task '{name}' (known: {', '.join(sorted(TASKS))})")


def uris(spec: FineTuneJobSpec, _: Meta) -> Iterable[Problem]:
    yield from fields.uri("spec.baseModel.uri", spec.base_model.uri, "model")
    yield from fields.revision(
        "spec.baseModel.revision", spec.base_model.revision, spec.base_model.uri
    )
    yield from fields.secret_ref("spec.baseModel.secretRef", spec.base_model.secret_ref)
    yield from fields.uri("spec.dataset.uri", spec.dataset.uri, "dataset")
    yield from fields.uri("spec.output.uri", spec.output.uri, "output")


def tasks(spec: FineTuneJobSpec, _: Meta) -> Iterable[Problem]:
    if spec.dataset.task is not None and spec.dataset.task not in TASKS:
        yield _unknown_task("spec.dataset.task", spec.dataset.task)
    eval_task = spec.evaluation.task if spec.evaluation is not None else None
    if eval_task is not None and eval_task not in TASKS:
        yield _unknown_task("spec.evaluation.task", eval_task)


def _dataset_scheme(uri: str | None) -> Scheme | None:
    if uri is None:
        return None
    try:
        return parse_uri(uri).scheme
    except StorageError:
        return None


def dataset(spec: FineTuneJobSpec, _: Meta) -> Iterable[Problem]:
    """Subset, format and template rules of loraland.data.loading."""
    ds = spec.dataset
    task: TaskDefinition | None = TASKS.get(ds.task) if ds.task else None
    scheme = _dataset_scheme(ds.uri)
    if ds.subset is not None:
        hub = scheme is Scheme.HF or (
            ds.uri is None and task is not None and task.source is not None
        )
        if not hub:
            yield Problem("spec.dataset.subset", "applies only to hf:// datasets (and hub tasks)")
    if ds.uri is not None and ds.format != "auto" and scheme is not Scheme.HF:
        suffix = next((s for s in _SUFFIX_FORMAT if ds.uri.lower().endswith(s)), None)
        if suffix is not None and _SUFFIX_FORMAT[suffix] != ds.format:
            yield Problem(
                "spec.dataset.format",
                f"{ds.format} does not match the file {ds.uri} ({_SUFFIX_FORMAT[suffix]}); "
                "use format: auto",
            )
    used: list[str] | None = None
    if ds.prompt_template is not None:
        try:
            used = placeholders(ds.prompt_template)
        except DataError as exc:
            yield Problem(
                "spec.dataset.promptTemplate",
                str(exc).removeprefix("promptTemplate ").removeprefix("is "),
            )
    # The task's fields are the row's fields when the rows come from the task (synthetic
    # rows, or a hub task's prepare step); a user's own file has fields only it knows.
    if task is not None and (ds.uri is None or task.prepare is not None):
        known = sorted(task.fields)
        for name in used or []:
            if name not in task.fields:
                yield Problem(
                    "spec.dataset.promptTemplate",
                    f"placeholder {{{name}}} is not a field of task {task.name} "
                    f"(fields: {', '.join(known)})",
                )
        if ds.output_field is not None and ds.output_field not in task.fields:
            yield Problem(
                "spec.dataset.outputField",
                f"'{ds.output_field}' is not a field of task {task.name} "
                f"(fields: {', '.join(known)})",
            )


def lora(spec: FineTuneJobSpec, _: Meta) -> Iterable[Problem]:
    """PEFT's LoraConfig rules and the trainer's QLoRA check."""
    targets = spec.lora.target_modules
    if targets is not None:
        if not targets:
            yield Problem(
                "spec.lora.targetModules",
                "empty: leave it out for the model's defaults, or name modules",
            )
        for i, name in enumerate(targets):
            if not _MODULE_NAME.match(name):
                yield Problem(
                    f"spec.lora.targetModules[{i}]", f"'{name}' is not a module name (e.g. q_proj)"
                )
        repeated = sorted({n for n in targets if targets.count(n) > 1})
        if repeated:
            yield Problem("spec.lora.targetModules", f"repeated: {', '.join(repeated)}")
        facts = fields.builtin_facts(spec.base_model.uri)
        if facts is not None:
            missing = [
                n
                for n in targets
                if _MODULE_NAME.match(n) and n.rsplit(".", 1)[-1] not in facts.lora_modules
            ]
            if missing:
                yield Problem(
                    "spec.lora.targetModules",
                    f"{', '.join(missing)} not found in {spec.base_model.uri} "
                    f"(candidates: {', '.join(facts.lora_modules)})",
                )
    if spec.lora.quantization != "none" and spec.resources.gpus == 0:
        yield Problem(
            "spec.lora.quantization",
            f"{spec.lora.quantization} (QLoRA) needs a CUDA GPU and resources.gpus is 0; "
            "use quantization: none to train on the CPU",
        )


def training(spec: FineTuneJobSpec, _: Meta) -> Iterable[Problem]:
    facts = fields.builtin_facts(spec.base_model.uri)
    if facts is not None and spec.training.max_seq_length > facts.max_positions:
        yield Problem(
            "spec.training.maxSeqLength",
            f"{spec.training.max_seq_length} exceeds the context of {spec.base_model.uri} "
            f"({facts.max_positions} tokens)",
        )


def pod(spec: FineTuneJobSpec, _: Meta) -> Iterable[Problem]:
    """Fields that end up in the Job's pod template."""
    yield from fields.resources("spec.resources", spec.resources)
    yield from fields.image("spec.image", spec.image)


def names(spec: FineTuneJobSpec, meta: Meta) -> Iterable[Problem]:
    """The adapter takes the job's name unless output.adapterName says otherwise."""
    if spec.output.adapter_name is None and meta.name is not None and len(meta.name) > 128:
        yield Problem(
            "metadata.name",
            f"{len(meta.name)} characters: the adapter takes the job's name and adapter names "
            "are at most 128 characters; set spec.output.adapterName",
        )


FINETUNEJOB = SpecValidator(FineTuneJobSpec, (uris, tasks, dataset, lora, training, pod, names))
