"""The task registry: `get_task(name)`; `TASKS` maps every name to its declaration.
A new benchmark is one `Task(...)` in benchmarks.py (or a file like it) plus, if its files
are in a layout not read yet, a reader in formats.py."""

from __future__ import annotations

from .base import KINDS, DataError, Sample, Task
from .benchmarks import BENCHMARKS
from .world import WORLD

TASKS: dict[str, Task] = {t.name: t for t in [*BENCHMARKS, *WORLD]}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def register_task(task: Task) -> None:
    if task.kind not in KINDS:
        raise ValueError(f"task {task.name}: kind {task.kind!r} is not one of {KINDS}")
    TASKS[task.name] = task


__all__ = ["DataError", "KINDS", "Sample", "TASKS", "Task", "get_task", "register_task"]
