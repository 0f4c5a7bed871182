"""Prefect task definitions: thin wrappers around sweepflow core functions."""

__all__: list[str] = []
