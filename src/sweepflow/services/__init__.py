"""Local servers for a project, started and stopped by sweepflow.

- ``servers``: a Prefect server, a process worker and the MLflow UI (``sweepflow up``).
- ``files``: their state files, ports and HTTP checks.
- ``cluster``: a ``dask-local`` cluster started before the flow.
- ``database``: PostgreSQL URLs for ``sweepflow up --database`` (checked, masked).
- ``temporary``: the temporary Prefect API of one ``sweepflow run``, which dies with it.
"""
