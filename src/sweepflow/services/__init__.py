"""Local servers for a project, started and stopped by sweepflow.

- ``servers``: a Prefect server, a process worker and the MLflow UI (``sweepflow up``).
- ``files``: their state files, ports and HTTP checks.
- ``cluster``: a ``dask-local`` cluster started before the flow.
"""
