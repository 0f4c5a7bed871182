"""Prefect pull steps for sweepflow's deployments: start a flow run where its code is.

``prefect.yaml``'s entrypoints (``flows/run_job.py:run_job``) are file paths relative to
the folder that holds the ``flows`` package: the repository root in a checkout (or an
editable install), ``site-packages`` in a regular install. That folder is not the
project (the job file's folder, where ``.sweepflow`` and the MLflow store are): a
worker started in ``examples/`` must still find ``flows/``. :func:`enter_code_root`
asks Python where the installed ``flows`` package is, so it needs no environment
variable from the worker and can never point at another copy of the code than the one
the flow run imports.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from sweepflow.errors import SweepflowError

__all__ = ["code_root", "enter_code_root"]


def code_root() -> Path:
    """The folder that holds the installed ``flows`` package (absolute).

    Found without importing ``flows`` (which would import Prefect).

    Raises:
        SweepflowError: ``flows`` is not importable in this environment.
    """
    spec = importlib.util.find_spec("flows")
    if spec is None or spec.origin is None:
        raise SweepflowError(
            "the 'flows' package of sweepflow is not importable in this Python "
            "environment; install sweepflow (pip install -e PATH/TO/sweepflow) where the "
            "worker runs"
        )
    return Path(spec.origin).resolve().parent.parent


def enter_code_root() -> dict[str, str]:
    """Pull step: change into :func:`code_root`, where ``flows/…`` entrypoints resolve.

    Relative paths in a flow run's parameters (``job_file: examples/sweepflow.yaml``)
    are then relative to that folder, the repository root in a checkout.

    Returns:
        ``{"directory": <the folder>}``, for later steps as ``{{ step-id.directory }}``.
    """
    root = code_root()
    os.chdir(root)
    return {"directory": str(root)}
