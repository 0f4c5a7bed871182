"""The error of a workflow declaration: its steps, wiring, config and stage selection."""

from __future__ import annotations

from sweepflow.errors import SweepflowError

__all__ = ["WorkflowError"]


class WorkflowError(SweepflowError, ValueError):
    """A step, workflow, workflow config or ``--stages`` selection that is invalid.

    Each problem is one line naming the step (or ``file:line`` and key path) and the fix.

    Attributes:
        problems: Every problem found, each a complete one-line message.
    """

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        head = (
            self.problems[0]
            if len(self.problems) == 1
            else f"{len(self.problems)} problems:\n  " + "\n  ".join(self.problems)
        )
        super().__init__(head)
