"""The pure parts of ``sweepflow llc tune``: the space, the reference sampler, the score.

:func:`tuning_space` parses and checks a ``--space`` (keys of the estimand refused,
:data:`ESTIMAND_KEYS`), :func:`default_space` is searched without one,
:func:`reference_config` is the long run that gives λ_ref, :func:`objective` scores a
trial and :func:`_shown` prints its params. No I/O: the study that uses them is in
:mod:`sweepflow.workloads.llc.tune`, where the public names are imported from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from sweepflow.errors import SweepSyntaxError
from sweepflow.plan.space import Dimension, SearchSpace, dimension, format_value
from sweepflow.spec.source import suggest
from sweepflow.syntax import Param, parse

from ._errors import LLCError
from ._files import validate
from ._sampler_config import HMCConfig, NUTSConfig, SamplerConfig

__all__ = [
    "ESTIMAND_KEYS",
    "default_space",
    "objective",
    "reference_config",
    "tuning_space",
]

#: Keys that define what is estimated; a space naming one is refused (the reason shown).
ESTIMAND_KEYS: Mapping[str, str] = {
    "gamma": "the localisation strength of the posterior whose λ is estimated",
    "beta": "the inverse temperature of the posterior whose λ is estimated",
    **{
        key: "a key of the target (its loss, data or w*)"
        for key in ("loss", "model", "data", "training", "precision", "l0", "w_star", "target")
    },
}


def default_space(cfg: SamplerConfig) -> str:
    """The space searched without ``--space``, around the base config ``cfg``.

    SGLD: the step size log-uniform over two decades centred on the base's, the batch
    size among 32, 64, 128 (and the base's), the preconditioner none or RMSProp. HMC:
    the leapfrog steps and the target acceptance; NUTS: the target acceptance and tree
    depth; MCLMC: the energy variance, log-uniform around the base's.

    >>> from sweepflow.workloads.llc._sampler_config import SGLDConfig
    >>> default_space(SGLDConfig(step_size=1e-4, batch_size=100))
    'step_size=log(1e-05:0.001) batch_size=32,64,100,128 precondition=none,rmsprop'
    """
    if cfg.kind == "sgld":
        sizes = sorted({32, 64, 128} | ({cfg.batch_size} if cfg.batch_size else set()))
        return (
            f"step_size=log({cfg.step_size / 10:.6g}:{cfg.step_size * 10:.6g}) "
            f"batch_size={','.join(map(str, sizes))} precondition=none,rmsprop"
        )
    if cfg.kind == "hmc":
        return "integration_steps=4,8,16,32 target_acceptance=0.6:0.95"
    if cfg.kind == "nuts":
        return "target_acceptance=0.6:0.95 max_tree_depth=6,8,10"
    var = cfg.desired_energy_var
    return f"desired_energy_var=log({var / 10:.6g}:{var * 10:.6g})"


def tuning_space(text: str, base: SamplerConfig, sampler: str) -> SearchSpace:
    """The search space ``text`` writes, checked against the base config ``base``.

    Raises:
        LLCError: A syntax error (with its column), a key that defines the estimand
            (``gamma``, ``beta``, the target's), a key the sampler does not have, or a
            value its config refuses; one line each.
    """
    try:
        params = parse(text, pipes=False, search=True)
    except SweepSyntaxError as exc:
        raise LLCError(f"--space has a syntax error: {exc.one_line()}") from None
    fields = sorted(set(type(base).model_fields) - {"kind"})
    dims: list[Dimension] = []
    fixed: dict[str, str] = {}
    for param in params:
        assert isinstance(param, Param)  # pipes=False parses params only
        key = param.key
        if key in ESTIMAND_KEYS:
            raise LLCError(
                f"--space names '{key}', {ESTIMAND_KEYS[key]}: it defines the estimand, "
                "and tuning it would change what is estimated (the reference shares it); "
                f"set it on sampler '{sampler}' in the experiments file and drop it from --space"
            )
        if key == "kind":
            raise LLCError("--space names 'kind': tune one sampler at a time with --sampler NAME")
        if key not in fields:
            raise LLCError(
                f"--space names '{key}', not a setting of {base.kind} sampler "
                f"'{sampler}'{suggest(key, fields)}"
            )
        dim = dimension(lambda message: LLCError(f"--space: {message}"), param)
        if isinstance(dim, str):
            fixed[key] = dim
        else:
            dims.append(dim)
    if not dims:
        raise LLCError(
            "--space has nothing to search: give a range (x=0:1), log(a:b) or a list (a,b)"
        )
    for dim in dims:  # every corner of the space is a valid config, checked now
        for value in dim.choices or (dim.low, dim.high):
            _overridden(base, {dim.key: value, **fixed}, f"--space {dim.key}={value}")
    return SearchSpace(tuple(dims), fixed, ())


def _overridden(base: SamplerConfig, params: Mapping[str, Any], what: str) -> SamplerConfig:
    """``base`` with ``params`` set, validated (``what`` names the values in an error)."""
    data = base.model_dump() | dict(params)
    config: SamplerConfig = validate(SamplerConfig, data, what)
    return config


def reference_config(
    base: SamplerConfig, kind: Literal["hmc", "nuts"] = "hmc", draws: int = 2000
) -> SamplerConfig:
    """The reference sampler: 4 chains of ``draws`` draws after ``max(50, draws // 2)``
    warm-up steps, with the tuned sampler's ``gamma``, ``beta``, ``escape`` and seed.

    >>> from sweepflow.workloads.llc._sampler_config import SGLDConfig
    >>> ref = reference_config(SGLDConfig(gamma=10.0), draws=300)
    >>> (ref.kind, ref.chains, ref.draws, ref.burn_in, ref.gamma, ref.beta)
    ('hmc', 4, 300, 150, 10.0, None)
    """
    shared = {
        "chains": 4,
        "draws": draws,
        "burn_in": max(50, draws // 2),
        "gamma": base.gamma,
        "beta": base.beta,
        "escape": base.escape,
        "seed": base.seed,
    }
    return HMCConfig(**shared) if kind == "hmc" else NUTSConfig(**shared)


def objective(
    errors: Sequence[float],
    grad_evals: Sequence[float],
    huber: float | None = None,
    per_work: bool = False,
) -> float:
    """A trial's score (lower is better) from its ``λ̂ - λ_ref`` per target.

    The mean over targets of ``|e|``, or with ``huber`` of the Huber loss
    ``e²/2`` (``|e| ≤ δ``), ``δ(|e| - δ/2)`` beyond. With ``per_work`` it is multiplied
    by ``log10`` of the gradient evaluations (all chains, warm-up included; mean over
    targets): the error per decade of work, so ten times the work must cut the error
    by more than the ratio of the decades to pay off.

    >>> objective([0.1, -0.3], [1e3, 1e3])
    0.2
    >>> objective([0.1, -3.0], [1e3, 1e3], huber=1.0)
    1.2525
    >>> round(objective([0.2], [1e4], per_work=True), 6)
    0.8
    """
    if huber is None:
        losses = [abs(e) for e in errors]
    else:
        losses = [e * e / 2 if abs(e) <= huber else huber * (abs(e) - huber / 2) for e in errors]
    score = sum(losses) / len(losses)
    if per_work:
        score *= math.log10(max(10.0, sum(grad_evals) / len(grad_evals)))
    return score


def _shown(params: Mapping[str, Any]) -> str:
    """Params as ``key=value`` words, floats to 4 significant digits.

    >>> _shown({"step_size": 7.50195444362e-05, "batch_size": 64})
    'step_size=7.502e-05 batch_size=64'
    """
    return " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={format_value(v)}"
        for k, v in params.items()
    )
