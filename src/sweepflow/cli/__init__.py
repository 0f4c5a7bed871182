"""The ``sweepflow`` command line (typer + rich): the top layer.

- ``main``: the commands (run, jobs, show, up, down, status, deploy, study, llc).
- ``console``: ``sweepflow run`` in a terminal, with a live bar and a summary table.
- ``dryrun``: what dry runs and job listings print.
- ``study``: ``sweepflow study JOB``.
"""
