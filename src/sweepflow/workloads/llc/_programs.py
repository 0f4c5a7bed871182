"""A small cache of compiled XLA programs, keyed by configuration and argument shapes.

Compiling a sampler takes seconds on a CPU, running it often less. Programs are pure
functions of their configuration (hashable frozen models, passed as ``key``) and of array
arguments, so one compiled program serves every seed, every dataset of the same shape,
and every repeat of a run in the same process.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["compiled"]

_MAX_PROGRAMS = 32
_programs: OrderedDict[Hashable, Any] = OrderedDict()


def compiled(key: Hashable, build: Callable[[], Callable], *args: Any) -> tuple[Any, float]:
    """The compiled ``jax.jit(build())`` for ``args``, and the seconds spent compiling it.

    Args:
        key: Everything the function's trace depends on besides the arguments' shapes
            and dtypes (configurations, not seeds or data).
        build: Makes the function; called only on a cache miss.
        args: Example arguments (arrays or pytrees of arrays) fixing shapes and dtypes.

    Returns:
        The executable (call it with arguments of the same shapes) and the compile time,
        0.0 when it came from the cache.
    """
    import jax

    leaves, tree = jax.tree_util.tree_flatten(args)
    signature = tuple((tuple(leaf.shape), str(leaf.dtype)) for leaf in leaves)
    full_key = (key, bool(jax.config.read("jax_enable_x64")), tree, signature)
    if full_key in _programs:
        _programs.move_to_end(full_key)
        return _programs[full_key], 0.0
    start = time.perf_counter()
    program = jax.jit(build()).lower(*args).compile()
    seconds = time.perf_counter() - start
    _programs[full_key] = program
    if len(_programs) > _MAX_PROGRAMS:
        _programs.popitem(last=False)
    return program, seconds
