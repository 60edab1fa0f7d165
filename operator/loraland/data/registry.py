"""The task registry: every synthetic and hub task by name."""

from __future__ import annotations

from loraland.data.catalog import HUB_TASKS
from loraland.data.errors import DataError
from loraland.data.synthetic import SYNTHETIC_TASKS
from loraland.data.tasks import TaskDefinition

TASKS: dict[str, TaskDefinition] = {task.name: task for task in (*SYNTHETIC_TASKS, *HUB_TASKS)}


def get_task(name: str) -> TaskDefinition:
    try:
        return TASKS[name]
    except KeyError:
        raise DataError(f"unknown task '{name}' (known: {', '.join(TASKS)})") from None


def list_tasks() -> list[TaskDefinition]:
    return list(TASKS.values())
