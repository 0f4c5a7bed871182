"""Execution profiles (``profiles/*.yaml``) and the code that turns job files into deployments."""

__all__: list[str] = []
