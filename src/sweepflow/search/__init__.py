"""Optuna searches: the only package that imports Optuna.

- ``study``: storage, study, sampler, pruner, and crash recovery.
- ``pruning``: intermediate values reported from inside a trial.
- ``report``: the best trial, tables, exports and plots.
- ``loop``: a search as units for the engine (asks, tells, crash recovery).
"""
