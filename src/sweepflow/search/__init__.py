"""Optuna searches: the only package that imports Optuna.

- ``locations``: where a study lives (storage forms, the state-folder rule, file names,
  the ask lock's file); pure, used by the job-file loader.
- ``study``: storage, study, sampler, pruner, and crash recovery.
- ``pruning``: intermediate values reported from inside a trial.
- ``report``: the best trial, tables, exports and plots.
- ``loop``: a search as units for the engine (asks under a lock shared by every driver
  of the study, tells, crash recovery).
- ``preflight``: what ``sweepflow run`` checks before anything starts.
"""
