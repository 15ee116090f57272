"""benchmark: fixed tasks over a zoo (splits, symmetry twins, targets), the views methods read,
the tasks' metrics and the submission format methods write and the scorer reads.

The names below are imported on first use, so importing one submodule (e.g.
``benchmark.views``) does not import the others. docs/tasks.md is the contract.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "TASKS": "tasks", "Task": "tasks", "TaskPart": "tasks", "TaskUnavailable": "tasks", "load_task": "tasks",
    "SPLITS": "splits", "Split": "splits", "SplitError": "splits", "get_split": "splits",
}

__all__ = ["SPLITS", "TASKS", "Split", "SplitError", "Task", "TaskPart", "TaskUnavailable", "get_split",
           "load_task"]

if TYPE_CHECKING:
    from benchmark.splits import SPLITS, Split, SplitError, get_split
    from benchmark.tasks import TASKS, Task, TaskPart, TaskUnavailable, load_task


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"benchmark.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'benchmark' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
