"""What makes a FineTuneStudy unrunnable: its own cross-field rules, then every cell.

A study is only as runnable as the FineTuneJobs its matrix expands to, so each distinct
(base model, task) cell is checked by the FineTuneJob validator itself (URIs, the task
registry, LoRA targets...) and its problems are reported at the study field the job's
field came from, with the run's name. Variants only override LoRA and training values,
which the schema of each expanded cell already checks (``matrix_problems``).
"""

from __future__ import annotations

from collections.abc import Iterable

from loraland.api.study import FineTuneStudySpec, semantic_problems
from loraland.study.matrix import expand, matrix_problems
from loraland.validation.finetunejob import FINETUNEJOB
from loraland.validation.problems import Problem
from loraland.validation.spec import Meta, SpecValidator

#: The name cells get when the study has none yet (``generateName``).
_UNNAMED = "study"


def cross_field(spec: FineTuneStudySpec, _: Meta) -> Iterable[Problem]:
    for path, reason in semantic_problems(spec):
        yield Problem(path, reason)


def _study_path(path: str, base: int, task: int) -> str:
    """A FineTuneJob field path as the study field it was made from."""
    for job_prefix, study_prefix in (
        ("spec.baseModel", f"spec.baseModels[{base}]"),
        ("spec.dataset.task", f"spec.tasks[{task}].task"),
        ("spec.dataset", f"spec.tasks[{task}].dataset"),
    ):
        if path == job_prefix or path.startswith(job_prefix + "."):
            return study_prefix + path[len(job_prefix) :]
    return "spec.template." + path.removeprefix("spec.")


def cells(spec: FineTuneStudySpec, meta: Meta) -> Iterable[Problem]:
    study = meta.name or _UNNAMED
    structural = [Problem(path, reason) for path, reason in matrix_problems(study, spec)]
    if structural:
        yield from structural
        return
    bases = {b.name: i for i, b in enumerate(spec.base_models)}
    tasks = {t.name: i for i, t in enumerate(spec.tasks)}
    seen: set[tuple[str, str]] = set()
    named: set[str] = set()  # a base's bad URI is bad in every task's cell: say it once
    for run in expand(study, spec):
        key = (run.base.name, run.task.name)
        if key in seen:
            continue
        seen.add(key)
        checked = FINETUNEJOB(run.spec.model_dump(mode="json", by_alias=True, exclude_none=True))
        for problem in checked.problems:
            where = _study_path(problem.path, bases[run.base.name], tasks[run.task.name])
            if where not in named:
                named.add(where)
                yield Problem(where, f"{problem.reason} (run {run.name})")


FINETUNESTUDY = SpecValidator(FineTuneStudySpec, (cross_field, cells))
