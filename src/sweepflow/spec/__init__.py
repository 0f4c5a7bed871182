"""The files users write, checked with file:line errors before anything starts.

- ``source``: YAML read with the line of every key.
- ``jobs``: the job file schema (``sweepflow.yaml``) and ``load_jobs``; ``sections``
  its parts (parameter sets, schedule, search settings).
- ``interpreter``: what a job runs (Python command lines, ``call:`` targets).
- ``profiles``, ``profile_models``: execution profiles ("cards").
"""
