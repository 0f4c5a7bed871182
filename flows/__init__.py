"""Prefect flow definitions: run a job, run a workflow, optimize, estimate LLC."""

__all__: list[str] = []
