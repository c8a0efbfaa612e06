"""Evaluation: metrics that agree with the official scripts (`xgenmm.eval.metrics`), benchmark
declarations (`xgenmm.eval.tasks`) and the harness (`evaluate`, `xgenmm eval`)."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # for type checkers; at run time each name is imported on first use
    from .harness import evaluate
    from .report import markdown_table, write_report
    from .tasks import TASKS, get_task

__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(["evaluate"], ".harness"),
    **dict.fromkeys(["markdown_table", "write_report"], ".report"),
    **dict.fromkeys(["TASKS", "get_task"], ".tasks"),
})

__all__ = ["TASKS", "evaluate", "get_task", "markdown_table", "write_report"]
