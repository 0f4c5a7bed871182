"""Convergence diagnostics of the λ̂ traces with ArviZ: bulk ESS and rank-normalised R-hat.

They are computed on the per-draw values ``nβ (L_n - L0)`` (the quantity whose mean is
λ̂) of the healthy chains; the running estimates are averages and would fool both.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["ess_and_rhat"]


def ess_and_rhat(values: Any) -> tuple[float | None, float | None]:
    """Bulk ESS and R-hat of an array of shape (chains, draws); None where undefined.

    ESS needs at least 4 draws; R-hat needs two chains.
    """
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] < 4:
        return None, None
    if not np.all(np.isfinite(values)):
        return None, None
    az = _arviz()
    ess = float(az.ess(values, method="bulk"))
    rhat = float(az.rhat(values)) if values.shape[0] >= 2 else None
    return (ess if np.isfinite(ess) else None), (
        rhat if rhat is None or np.isfinite(rhat) else None
    )


def _arviz() -> Any:
    with warnings.catch_warnings():
        # ArviZ 0.x announces its 1.0 refactor with a FutureWarning on import.
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz
