"""The ``sweepflow`` command line (typer + rich): the top layer.

- ``main``: the app and its entry point; run, study, jobs, show.
- ``servers``: up, down, status, deploy. ``profiles``: profile show / list.
- ``options``: the ``--file`` option, the project it names, one-line errors.
- ``console``: ``sweepflow run`` in a terminal, with a live bar and a summary table.
- ``dryrun``: what dry runs and job listings print.
- ``study``: ``sweepflow study JOB``.
- ``preflight``: checks before a run starts (state folder, MLflow store).
- ``verify``: ``sweepflow verify [JOB]``: results, trial folders and runs, repaired.
- ``results``: ``sweepflow results JOB`` (a sweep's trials) and ``sweepflow ls [JOB]``
  (past sweeps), read back from MLflow.
"""
