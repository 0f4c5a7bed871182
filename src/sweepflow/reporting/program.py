"""``@sweepflow.main``: turn a function of a pydantic config into a sweepable program.

The counterpart of HydraFlow's ``@hydraflow.main``::

    class Config(BaseModel):
        lr: float = 0.1
        model: Model = Model()

    @sweepflow.main(Config)
    def app(cfg: Config, out: Path) -> None: ...

    if __name__ == "__main__":
        app()  # python train.py lr=0.01 model.depth=3

Launched by sweepflow, the config is recorded through the light channel of
:mod:`sweepflow.reporting.channel` (params plus ``config.yaml``) and ``out`` is the trial's folder;
run by hand, a new MLflow run records it and ``out`` is that run's artifact folder.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from sweepflow.errors import SweepflowError
from sweepflow.reporting import members
from sweepflow.reporting.channel import (
    by_hand_experiment_id,
    flatten,
    in_process,
    log_artifact,
    log_params,
    report_path,
    trial_ended,
    trial_setting,
)

__all__ = ["ConfigError", "config_keys", "main", "parse_config", "unquote"]

C = TypeVar("C", bound=BaseModel)
R = TypeVar("R")

_NULLS = ("null", "None")
_CONTAINERS = (list, tuple, set, frozenset, dict)


class ConfigError(SweepflowError, ValueError):
    """Command-line ``key=value`` items that do not fit the config model.

    The message is one line, ready to print after ``error:``.
    """


def _options(annotation: Any) -> tuple[list[Any], bool]:
    """The non-None members of a (possibly optional) annotation, and whether None fits."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = list(typing.get_args(annotation))
    else:
        members = [annotation]
    others = [m for m in members if m is not type(None)]
    return others, len(others) < len(members)


def _model_class(annotation: Any) -> type[BaseModel] | None:
    for member in _options(annotation)[0]:
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


def _is_open(annotation: Any) -> bool:
    """Whether any dotted key may follow (a mapping or ``Any``)."""
    for member in _options(annotation)[0]:
        origin = typing.get_origin(member) or member
        if member is Any or origin in (dict, Mapping):
            return True
    return False


def _fields(model: type[BaseModel]) -> dict[str, tuple[str, Any]]:
    """Accepted key -> (input name for pydantic, annotation); names and aliases."""
    found: dict[str, tuple[str, Any]] = {}
    for name, field in model.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        alias = alias or field.alias
        found[name] = (alias or name, field.annotation)
        if alias:
            found[alias] = (alias, field.annotation)
    return found


def config_keys(
    model: type[BaseModel], prefix: str = "", _seen: frozenset[type] = frozenset()
) -> list[str]:
    """Every dotted key of ``model``: sections and leaves, in field order.

    A nested model field ``model: Model`` gives ``model`` and then ``model.depth``, ….

    >>> class Config(BaseModel):
    ...     lr: float = 0.1
    ...     seed: int = 0
    >>> config_keys(Config)
    ['lr', 'seed']
    """
    keys = []
    for name, field in model.model_fields.items():
        keys.append(f"{prefix}{name}")
        sub = _model_class(field.annotation)
        if sub is not None and sub not in _seen | {model}:  # stop at recursive models
            keys.extend(config_keys(sub, f"{prefix}{name}.", _seen | {model}))
    return keys


def _resolve(model: type[BaseModel], key: str) -> tuple[list[str], Any]:
    """Map a dotted key to pydantic input names and the annotation of its target."""
    parts = key.split(".")
    names: list[str] = []
    current: type[BaseModel] | None = model
    annotation: Any = model
    for index, part in enumerate(parts):
        if current is None:  # inside a mapping or Any: free-form keys
            names.extend(parts[index:])
            return names, Any
        fields = _fields(current)
        if part not in fields:
            known = config_keys(model)
            import difflib  # only for this error message

            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else _valid_keys(known)
            raise ConfigError(f"unknown config key '{key}' — {hint}")
        name, annotation = fields[part]
        names.append(name)
        if index < len(parts) - 1:
            current = _model_class(annotation)
            if current is None and not _is_open(annotation):
                section = ".".join(parts[: index + 1])
                raise ConfigError(
                    f"config key '{section}' is a value, not a section: "
                    f"cannot set '{key}'; use {section}=..."
                )
    return names, annotation


def _valid_keys(known: list[str]) -> str:
    shown = ", ".join(known[:12]) + (", …" if len(known) > 12 else "")
    return f"valid keys: {shown}" if known else "this config has no keys"


def _value(key: str, raw: str, annotation: Any) -> Any:
    """The input for pydantic: ``None`` for null, YAML for containers, else the text."""
    members, nullable = _options(annotation)
    if nullable and raw in _NULLS:
        return None
    structured = any(
        (typing.get_origin(m) or m) in _CONTAINERS
        or (isinstance(m, type) and issubclass(m, BaseModel))
        for m in members
    )
    if not structured:
        return unquote(raw)
    import yaml  # on use (here and below): `from sweepflow import main` does not pay it

    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0]
        raise ConfigError(f"invalid value for {key}: {raw!r} ({problem})") from None


def unquote(raw: str) -> str:
    """A value as Hydra's override parser reads it: quotes around the whole removed.

    Inside the quotes, ``\\'`` (``\\"``) is the quote itself, and a run of backslashes
    right before a quote is halved; other backslashes stay as written. Unquoted text
    loses the backslash of Hydra's escapes (``\\,``, ``\\=``, ``\\ ``, ``\\\\``, …).

    >>> unquote("'my run'"), unquote('"say \\\\"hi\\\\""'), unquote("'it\\\\'s'")
    ('my run', 'say "hi"', "it's")
    >>> unquote("'a','b'"), unquote("x\\\\,y"), unquote("'x'y")
    ("'a','b'", 'x,y', "'x'y")
    """
    if len(raw) >= 2 and raw[0] in "'\"" and raw[-1] == raw[0]:
        inner = _quoted(raw[1:-1], raw[0])
        if inner is not None:
            return inner
    return re.sub(r"\\([\\()\[\]{}:=, \t])", r"\1", raw)


def _quoted(text: str, quote: str) -> str | None:
    """The text between two ``quote`` characters, unescaped; None if a bare quote
    inside ends the string early (``'a','b'`` is a list, not one quoted value)."""
    out: list[str] = []
    for run, char in re.findall(r"(\\*)(.|$)", text, flags=re.DOTALL):
        if char == quote:
            if len(run) % 2 == 0:
                return None
            out.append("\\" * (len(run) // 2) + quote)
        elif char == "":  # the end: a run before the closing quote is halved
            out.append("\\" * (len(run) // 2))
        else:
            out.append(run + char)
    return "".join(out)


def _assign(tree: dict[str, Any], names: list[str], value: Any) -> None:
    for name in names[:-1]:
        child = tree.get(name)
        if not isinstance(child, dict):
            child = tree[name] = {}
        tree = child
    tree[names[-1]] = value


def _split(item: str) -> tuple[str, str]:
    key, sep, raw = item.partition("=")
    key = key.lstrip("+")  # Hydra's "+key" / "++key": every key exists in a model
    if not sep or not key:
        raise ConfigError(f"expected key=value, got {item!r} (e.g. lr=0.01 or model.depth=3)")
    return key, raw


def _describe(error: Mapping[str, Any], given: Mapping[str, str]) -> str:
    key = ".".join(str(part) for part in error["loc"])
    message = error["msg"]
    if error["type"] == "missing":
        return f"missing config key '{key}' — pass {key}=..."
    if not key:
        return f"invalid config: {message}"
    shown = given.get(key, error.get("input"))
    return f"invalid value for {key}: {shown!r} — {message}"


def parse_config(config_class: type[C], argv: Sequence[str]) -> tuple[C, dict[str, str]]:
    """Parse ``key=value`` items into ``config_class``.

    Dotted keys set nested fields (``model.depth=3``); values are parsed by pydantic
    from their text (read as Hydra reads it: ``name='my run'`` gives ``my run``, see
    :func:`unquote`), lists and mappings from YAML (``layers=[64,64]``), and ``null``
    or ``None`` gives None where the field allows it. A later item wins. The items as
    given keep their text (quotes included), so the params recorded equal the flow's.

    Args:
        config_class: The pydantic model of the program's config.
        argv: The items, e.g. ``sys.argv[1:]``.

    Returns:
        The config, and the items as given (key -> text).

    Raises:
        ConfigError: An item without ``=``, an unknown key (with the closest valid
            key), or a value the model rejects; the message is one line.
    """
    tree: dict[str, Any] = {}
    given: dict[str, str] = {}
    for item in argv:
        key, raw = _split(item)
        names, annotation = _resolve(config_class, key)
        _assign(tree, names, _value(key, raw, annotation))
        given[key] = raw
    try:
        return config_class.model_validate(tree), given
    except ValidationError as exc:
        errors = exc.errors()
        line = _describe(errors[0], given)
        if len(errors) > 1:
            others = ", ".join(".".join(map(str, e["loc"])) or "config" for e in errors[1:])
            line += f" (also invalid: {others})"
        raise ConfigError(line) from None


def _usage(config_class: type[BaseModel], program: str) -> str:
    lines = [f"usage: {program} [key=value ...]", "", "config keys (default):"]
    defaults = {
        name: field.get_default(call_default_factory=True)
        for name, field in config_class.model_fields.items()
        if not field.is_required()
    }
    dump = flatten(config_class.model_construct(**defaults).model_dump(mode="json"))
    sections = {key.rpartition(".")[0] for key in config_keys(config_class)}
    for key in config_keys(config_class):
        if key in dump:
            lines.append(f"  {key}={dump[key]}")
        elif key not in sections:
            lines.append(f"  {key}  (required)")
    return "\n".join(lines)


def _params(config: BaseModel, given: Mapping[str, str]) -> dict[str, str]:
    """Flattened params; keys given on the command line keep their text as written, so
    they match the params the flow recorded for the trial (MLflow rejects a change)."""
    flat = {key: str(value) for key, value in flatten(config.model_dump(mode="json")).items()}
    flat.update({key: raw for key, raw in given.items() if key in flat})
    return flat


def _write_config(config: BaseModel, folder: Path) -> Path:
    """Write ``config.yaml`` atomically (temporary name, then rename)."""
    import yaml

    path = folder / "config.yaml"
    temporary = folder / f".config.yaml.{os.getpid()}.tmp"
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
    return path


def _under_sweepflow(function: Callable[[C, Path], R], config: C, given: Mapping[str, str]) -> R:
    report = Path(report_path() or "")
    # In-process (call:) trials share the environment: the report file names the folder.
    folder = (
        report.parent.resolve()
        if in_process()
        else Path(os.environ.get("SWEEPFLOW_TRIAL_DIR") or report.parent).resolve()
    )
    with members.given(given):  # inside a batch or submit unit: which trial this is
        position = members.current(trial_setting)
        if position is not None:  # the unit's trials share its folder: one each
            folder = folder / "trials" / str(position)
        folder.mkdir(parents=True, exist_ok=True)
        log_params(_params(config, given))
        log_artifact(_write_config(config, folder))
        result = function(config, folder)
        trial_ended()
        return result


def _by_hand(function: Callable[[C, Path], R], config: C, given: Mapping[str, str]) -> R:
    import mlflow

    from sweepflow.tracking.uri import local_path

    experiment_id = by_hand_experiment_id()
    run = mlflow.start_run(
        experiment_id=experiment_id,
        nested=mlflow.active_run() is not None,
        tags={"sweepflow.role": "manual"},
    )
    run_id = run.info.run_id
    local = local_path(run.info.artifact_uri)
    folder = (local or Path("outputs", run_id)).resolve()
    status = "FAILED"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        mlflow.log_params({k: v[:6000] for k, v in _params(config, given).items()})
        _write_config(config, folder)
        result = function(config, folder)
        status = "FINISHED"
        return result
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except SystemExit as exc:
        status = "FINISHED" if exc.code in (None, 0) else "FAILED"
        raise
    finally:
        if local is None:  # a remote store: upload what the program wrote
            mlflow.log_artifacts(str(folder), run_id=run_id)
        mlflow.end_run(status)


def main(
    config_class: type[C],
) -> Callable[[Callable[[C, Path], R]], Callable[..., R]]:
    """Decorate ``function(cfg, out)`` as a program that parses its config from argv.

    The decorated function is called as ``app()`` (parses ``sys.argv[1:]``) or
    ``app(["lr=0.1", "model.depth=3"])``, and returns what the function returns.
    Bad items print one ``error: ...`` line to stderr and exit with status 2;
    ``-h`` / ``--help`` prints the config keys and exits.

    - Under sweepflow (``SWEEPFLOW_REPORT`` set): the config's flattened params and a
      ``config.yaml`` in the trial folder are recorded through :mod:`sweepflow.reporting.channel`
      (no MLflow import), and ``out`` is ``$SWEEPFLOW_TRIAL_DIR``.
    - By hand: a new MLflow run (default tracking URI; experiment
      ``$MLFLOW_EXPERIMENT_ID`` or ``$MLFLOW_EXPERIMENT_NAME``, else
      ``$SWEEPFLOW_EXPERIMENT``, else the program's name, e.g. ``train`` for
      ``python train.py``; tag ``sweepflow.role=manual``) records
      the params and ``config.yaml``; ``out`` is its local artifact folder (or
      ``outputs/<run id>``, uploaded at the end, for a remote store). The run ends
      FINISHED, or FAILED if the function raised.

    Args:
        config_class: The pydantic model of the config.
    """
    if not (isinstance(config_class, type) and issubclass(config_class, BaseModel)):
        raise TypeError(
            f"sweepflow.main needs a pydantic model class, got {config_class!r}; "
            "use @sweepflow.main(Config) with class Config(BaseModel)"
        )

    def decorate(function: Callable[[C, Path], R]) -> Callable[..., R]:
        @functools.wraps(function)
        def program(argv: Sequence[str] | None = None) -> R:
            items = list(sys.argv[1:] if argv is None else argv)
            if any(item in ("-h", "--help") for item in items):
                print(_usage(config_class, Path(sys.argv[0]).name or "program"))
                raise SystemExit(0)
            try:
                config, given = parse_config(config_class, items)
            except ConfigError as exc:
                print(f"error: {exc}", file=sys.stderr)
                raise SystemExit(2) from None
            if report_path():
                return _under_sweepflow(function, config, given)
            return _by_hand(function, config, given)

        # wraps() points inspect.signature at the function; a program takes argv items.
        program.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter(
                    "argv",
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    default=None,
                    annotation="Sequence[str] | None",
                )
            ],
            return_annotation=inspect.signature(function).return_annotation,
        )
        program.config_class = config_class  # type: ignore[attr-defined]
        return program

    return decorate
