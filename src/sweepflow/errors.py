"""The error classes of sweepflow: one root, each subclass also the matching builtin."""

from __future__ import annotations

__all__ = [
    "DiskFull",
    "IncompleteRun",
    "JobError",
    "JobFileError",
    "ProfileError",
    "SweepSyntaxError",
    "SweepflowError",
    "TrialFailed",
    "TrialPruned",
]


class SweepflowError(Exception):
    """Root of every error sweepflow raises on purpose (bad input, bad config)."""


class SweepSyntaxError(SweepflowError, ValueError):
    """A sweep expression that cannot be parsed.

    The message shows the text with a caret under the offending column and says what
    was expected there.

    Attributes:
        text: The text shown (a whole token list when the error came from one token).
        column: 0-based index of the offending character in ``text``.
        reason: What is wrong and how to fix it, without the text and caret.
    """

    def __init__(self, reason: str, text: str, column: int) -> None:
        self.reason = reason
        self.text = text
        self.column = max(0, min(column, len(text)))
        super().__init__(f"{reason}\n  {text}\n  {' ' * self.column}^")

    def one_line(self) -> str:
        """The error on one line: reason and the column it points at."""
        return f"{self.reason} (in {self.text!r} at column {self.column + 1})"


class JobFileError(SweepflowError, ValueError):
    """A job file that is invalid as a whole (YAML syntax, unknown keys, wrong types).

    Attributes:
        problems: Every problem found, each a complete one-line message with its
            file:line and key path.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        head = (
            self.problems[0]
            if len(self.problems) == 1
            else (
                f"{len(self.problems)} problems in the job file:\n  " + "\n  ".join(self.problems)
            )
        )
        super().__init__(head)


class JobError(SweepflowError, ValueError):
    """A job that cannot be expanded or run (its own semantic error).

    Other jobs of the same file are unaffected.
    """


class ProfileError(SweepflowError, ValueError):
    """An execution profile that cannot be found, read or validated.

    The message is one line: the profile, the key path with its ``file:line`` (or the
    ``--set`` item it came from), what is wrong, and how to fix it.
    """


class DiskFull(SweepflowError, OSError):
    """The file system holding the state folder (or a trial's files) is full.

    The message says which one and what to do; the run stops starting trials and
    keeps what finished.
    """


class IncompleteRun(SweepflowError, RuntimeError):
    """A job's trials ended but not all of them finished (the summary says which)."""


class TrialFailed(SweepflowError, RuntimeError):
    """A trial whose program exited non-zero, timed out, or raised."""


class TrialPruned(TrialFailed):
    """A trial the search's pruner stopped early (see ``sweepflow.should_prune``).

    Raise it from a ``call:`` function (or exit a ``run:`` program) once
    ``should_prune()`` says so; the trial is told PRUNED, and never cached.
    """

    def __init__(self, message: str = "pruned by the search's pruner") -> None:
        super().__init__(message)
