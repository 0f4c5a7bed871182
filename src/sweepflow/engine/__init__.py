"""Scheduling units onto a runner, without Prefect.

- ``progress``: progress events from a running job to whoever shows them.
"""
