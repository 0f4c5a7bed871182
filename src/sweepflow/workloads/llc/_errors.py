"""The error classes of the LLC workload, under sweepflow's one root error."""

from __future__ import annotations

from sweepflow.errors import SweepflowError

__all__ = ["LLCError", "PrecisionMismatchError"]


class LLCError(SweepflowError, ValueError):
    """Bad input to the LLC workload: one line saying what, where and how to fix it."""


class PrecisionMismatchError(LLCError):
    """A target sampled under another ``jax_enable_x64`` setting than it was built with.

    Nothing is cast silently: the message names both settings and how to make them agree.
    """
