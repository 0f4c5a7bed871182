"""Computational workloads that sweepflow runs as tasks (the JAX LLC estimator lives here).

Importing this package, or any module under it, loads no heavy library: each workload
imports JAX and its friends inside the functions that compute.
"""

from __future__ import annotations

__all__: list[str] = []
