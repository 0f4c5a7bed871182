"""What a user's program imports, kept light (no framework is imported).

- ``channel``: ``sweepflow.log_metrics``, ``log_params``, ``log_artifact``, the per-trial
  report file, and ``should_prune``; standard library only, as every trial imports it.
- ``reader``: ``read_report`` and :class:`Report`, how the flow reads a report file back.
- ``program``: ``@sweepflow.main``, a function of a pydantic config as a program.
"""
