"""Settings: where sweepflow keeps its state, with one documented precedence.

Precedence, highest first: command-line flag > job file > ``SWEEPFLOW_*`` environment
variable > default.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["STATE_DIR_NAME", "state_dir"]

STATE_DIR_NAME = ".sweepflow"


def state_dir(project_dir: str | Path | None = None) -> Path:
    """The state folder (absolute): ``$SWEEPFLOW_HOME`` or ``<project>/.sweepflow``.

    Args:
        project_dir: The folder of the job file; defaults to the working directory.
    """
    home = os.environ.get("SWEEPFLOW_HOME")
    if home:
        return Path(home).expanduser().resolve()
    return (Path(project_dir or ".") / STATE_DIR_NAME).resolve()
