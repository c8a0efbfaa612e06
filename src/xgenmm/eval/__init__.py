"""Evaluation: metrics that agree with the official scripts (`xgenmm.eval.metrics`), benchmark
declarations (`xgenmm.eval.tasks`) and the harness (`evaluate`, `xgenmm eval`)."""

from .harness import evaluate
from .report import markdown_table, write_report
from .tasks import TASKS, get_task

__all__ = ["TASKS", "evaluate", "get_task", "markdown_table", "write_report"]
