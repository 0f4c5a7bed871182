"""``@sweepflow.step``: declare a function as a workflow step with typed inputs and outputs.

The decorator reads the function's signature once, at decoration time, and refuses a
step whose parameters do not match what it declares::

    @sweepflow.step(inputs={"dataset": "dataset"}, outputs={"model": "model"})
    def train(cfg: TrainConfig, dataset: sweepflow.Artifact, workspace: Path) -> dict: ...

The first parameter, annotated with a pydantic model, is the step's config (its key in
the workflow config is the step's name); each declared input is a parameter annotated
``sweepflow.Artifact``; ``workspace: Path`` is the folder the step writes its outputs in.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
import sys
import typing
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel

from sweepflow.workflow.artifact import Artifact
from sweepflow.workflow.errors import WorkflowError

__all__ = ["Step", "step"]

WORKSPACE = "workspace"
_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


class Step:
    """A declared step: the function and what it takes and makes.

    Calling the step calls the function unchanged (handy in tests).

    Attributes:
        function: The decorated function.
        name: The step's name (the function's name); its key in the workflow config.
        config_model: The pydantic model of its config, or None for a step without one.
        config_param: The name of the config parameter (``cfg``), or None.
        inputs: Input name -> artifact type, in declaration order.
        outputs: Output name -> artifact type, in declaration order.
        takes_workspace: Whether the function has a ``workspace: Path`` parameter.
        code_version: Replaces the automatic code fingerprint in the cache key when set.
        validate: Called with the cached outputs on a cache hit; False marks them stale.
    """

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        inputs: Mapping[str, str],
        outputs: Mapping[str, str],
        code_version: str | None,
        validate: Callable[..., Any] | None,
        localns: Mapping[str, Any] | None = None,
    ) -> None:
        self.function = function
        self.name: str = function.__name__
        self.inputs: Mapping[str, str] = MappingProxyType(dict(inputs))
        self.outputs: Mapping[str, str] = MappingProxyType(dict(outputs))
        self.code_version = code_version
        self.validate = validate
        self.config_model: type[BaseModel] | None = None
        self.config_param: str | None = None
        self.takes_workspace = False
        self._check_declaration()
        self._read_signature(localns or {})
        functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        # Pickled by reference, as functions are: the module attribute under the
        # function's name is this step, not the function, so pickling ``function``
        # itself would fail for a worker process.
        return _load_step, (self.function.__module__, self.function.__qualname__)

    def __repr__(self) -> str:
        return f"<step {self.name} {dict(self.inputs)} -> {dict(self.outputs)}>"

    def _fail(self, what: str) -> WorkflowError:
        return WorkflowError(f"step '{self.name}': {what}")

    def _check_declaration(self) -> None:
        for kind, names in (("input", self.inputs), ("output", self.outputs)):
            for name, type_ in names.items():
                if not isinstance(name, str) or not name.isidentifier():
                    raise self._fail(
                        f"{kind} name {name!r} is not a Python identifier: use e.g. 'dataset'"
                    )
                if not isinstance(type_, str) or not _TYPE.fullmatch(type_):
                    raise self._fail(
                        f"{kind} '{name}' has type {type_!r}: an artifact type is a word "
                        "of letters, digits, '_' or '-' (e.g. 'dataset')"
                    )
        for name in self.inputs:
            if name == WORKSPACE:
                raise self._fail(f"'{WORKSPACE}' cannot be an input name: rename the input")
        if self.code_version is not None and not isinstance(self.code_version, str):
            raise self._fail(f"code_version must be a string, got {self.code_version!r}")
        if self.validate is not None and not callable(self.validate):
            raise self._fail(f"validate must be a function, got {self.validate!r}")

    def _read_signature(self, localns: Mapping[str, Any]) -> None:
        params = list(inspect.signature(self.function).parameters.values())
        try:
            hints = typing.get_type_hints(self.function, localns=dict(localns))
        except Exception as exc:  # any annotation that cannot be evaluated
            raise self._fail(
                f"cannot read its annotations ({exc}): define the types it names at module level"
            ) from None
        if params:
            first = hints.get(params[0].name)
            if isinstance(first, type) and issubclass(first, BaseModel):
                self.config_model, self.config_param = first, params[0].name
                params = params[1:]
            elif params[0].name == "cfg":
                raise self._fail(
                    "parameter 'cfg' must be annotated with a pydantic model: "
                    "write cfg: MyConfig (a BaseModel subclass)"
                )
        for param in params:
            annotation = hints.get(param.name, inspect.Parameter.empty)
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise self._fail(
                    f"parameter '{param.name}' is variadic: declare each input as "
                    "'name: sweepflow.Artifact' instead"
                )
            if param.name == WORKSPACE:
                self.takes_workspace = True
            elif param.name in self.inputs:
                if annotation is not Artifact:
                    raise self._fail(
                        f"input parameter '{param.name}' must be annotated "
                        f"'{param.name}: sweepflow.Artifact'"
                    )
            elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
                raise self._fail(
                    f"parameter '{param.name}' is a config model but not the first "
                    "parameter: make the config the first parameter (cfg: Model)"
                )
            else:
                type_ = "TYPE" if annotation is not Artifact else param.name
                raise self._fail(
                    f"parameter '{param.name}' is not a declared input: add it to "
                    f"inputs={{'{param.name}': '{type_}'}} or remove the parameter"
                )
        missing = [name for name in self.inputs if name not in {p.name for p in params}]
        if missing:
            raise self._fail(
                f"declares input '{missing[0]}' but has no parameter '{missing[0]}': add "
                f"'{missing[0]}: sweepflow.Artifact' to its parameters"
            )


def _load_step(module: str, qualname: str) -> Step:
    """The step defined at ``module.qualname`` (how a pickled step is loaded)."""
    value: Any = importlib.import_module(module)
    for part in qualname.split("."):
        value = getattr(value, part)
    if not isinstance(value, Step):
        raise WorkflowError(f"{module}.{qualname} is not a step: decorate it with @sweepflow.step")
    return value


def step(
    inputs: Mapping[str, str] | None = None,
    outputs: Mapping[str, str] | None = None,
    code_version: str | None = None,
    validate: Callable[..., Any] | None = None,
) -> Callable[[Callable[..., Any]], Step]:
    """Declare a function as a workflow step.

    Args:
        inputs: Input name -> artifact type; each is a parameter ``name: sweepflow.Artifact``.
        outputs: Output name -> artifact type; the function returns
            ``{name: path under workspace}`` (plus optional JSON-able metadata).
        code_version: A version string that replaces the automatic code fingerprint in
            the step's cache key (bump it to re-run the step).
        validate: Called on a cache hit with the cached outputs; returning False makes
            the entry stale (for results that point outside: a remote job, a served model).

    Returns:
        A decorator that turns the function into a :class:`Step`.

    Raises:
        WorkflowError: The signature does not match the declaration (one line naming the
            step, the parameter and the fix).
    """

    def decorate(function: Callable[..., Any]) -> Step:
        if isinstance(function, Step):
            raise function._fail("is decorated twice with @sweepflow.step: keep one")
        # The caller's locals resolve the annotations of a step defined in a function.
        here = sys._getframe(1).f_locals
        return Step(
            function,
            inputs=inputs or {},
            outputs=outputs or {},
            code_version=code_version,
            validate=validate,
            localns=here,
        )

    return decorate
