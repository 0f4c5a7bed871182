"""From a job to its units, lazily and without running anything.

- ``expansion``: batches and trials of a job's sets.
- ``commands``: concrete invocations (argv lists, calls, parameter files).
- ``specs``: trial specs with cache keys and folders.
- ``space``: the search space of an ``optimize:`` job.
"""

from sweepflow.plan.expansion import MAX_TRIALS, Plan, check_size, compile_job

__all__ = ["MAX_TRIALS", "Plan", "check_size", "compile_job"]
