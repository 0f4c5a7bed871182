"""What a user's program imports, kept light (no framework is imported).

- ``channel``: ``sweepflow.log_metrics``, ``log_params``, ``log_artifact``, the per-trial
  report file, and ``should_prune``.
- ``program``: ``@sweepflow.main``, a function of a pydantic config as a program.
"""
