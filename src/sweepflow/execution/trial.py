"""Execute one unit of work (a trial, a batch, or a submit handler) without Prefect.

Commands never go through a shell: argv items reach the program as they are. Each unit
runs in its own folder under the state folder with stdout/stderr captured to files; a
timeout kills the whole process group. The Prefect task is a thin wrapper around
:func:`execute`.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import inspect
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sweepflow.errors import TrialFailed, TrialPruned  # defined there: light to import
from sweepflow.execution.claims import Keeper, Owned, stop_orphan
from sweepflow.execution.lifetime import with_parent_death
from sweepflow.execution.warm import WarmProcess, WarmStartError, spawn
from sweepflow.faults import disk_full, is_disk_full
from sweepflow.reporting.channel import reporting_to, unflatten
from sweepflow.reporting.reader import read_report
from sweepflow.spec.interpreter import call_target

__all__ = [
    "TrialFailed",
    "TrialPruned",
    "TrialResult",
    "TrialSpec",
    "accept",
    "execute",
    "placement",
    "stop_orphan",
    "terminate_all",
]

LogFn = Callable[[str], None]
# Where a trial ran, recorded with its result and as MLflow tags: the SLURM job and node
# of its Dask worker and the GPUs SLURM gave that job.
PLACEMENT = ("SLURM_JOB_ID", "SLURMD_NODENAME", "CUDA_VISIBLE_DEVICES")

_RUNNING: set[subprocess.Popen | WarmProcess] = set()
_RUNNING_LOCK = threading.Lock()
_STOPPING = threading.Event()  # set by terminate_all: the units left of a chunk do not start
_IMPORT_LOCK = threading.Lock()
_LOADED: dict[str, tuple[int, int]] = {}  # module file -> (mtime_ns, size) when imported


class TrialSpec(BaseModel):
    """Everything needed to run one unit, as plain data (pickles, hashes, travels).

    Attributes:
        workdir: Absolute folder of the unit (``.sweepflow/runs/<job>/<digest>``).
        env: Extra environment for the program (tracking URIs, run ids, report file).
        preload: Modules a warm interpreter imports once; the program (``python
            script.py`` or ``python -m module``) is forked from it (see
            :mod:`sweepflow.execution.warm`). Empty: a new process.
    """

    model_config = ConfigDict(frozen=True)

    job: str
    kind: Literal["run", "call", "submit", "workflow"]
    index: int
    batch: int = 0
    params: dict[str, str] = Field(default_factory=dict)
    items: tuple[str, ...] = ()
    argv: tuple[str, ...] = ()
    function: str = ""
    lines: tuple[str, ...] = ()
    param_file: str | None = None
    digest: str
    cache_key: str
    fingerprint: str = ""
    workdir: str
    project_dir: str
    timeout: float | None = None
    env: dict[str, str] = Field(default_factory=dict)
    preload: tuple[str, ...] = ()
    # When the run that submits the unit looked up the cache (seconds since the epoch;
    # 0: never): a result stored after that was made by another run at the same time,
    # and is taken instead of running the unit again.
    since: float = 0.0

    @property
    def label(self) -> str:
        """A short human name: the parameters (a batch's sweep items), or kind and index."""
        text = " ".join(f"{k}={v}" for k, v in self.params.items())
        if not text and self.kind != "submit":
            text = " ".join(i for i in self.items if i != "--multirun" and "hydra." not in i)
        return text[:120] or f"{self.kind}-{self.index}"


class TrialResult(BaseModel):
    """What a successful unit produced (persisted as its cached result)."""

    model_config = ConfigDict(frozen=True)

    digest: str
    cache_key: str
    index: int
    params: dict[str, str] = Field(default_factory=dict)
    returncode: int | None = None
    value: Any = None
    metrics: dict[str, float] = Field(default_factory=dict)
    started: float
    ended: float
    workdir: str
    host: str = ""
    placement: dict[str, str] = Field(default_factory=dict)
    # Set on the copy a process got by waiting for another process that ran the trial
    # at the same time (never stored: the stored result is that process's own).
    elsewhere: bool = Field(default=False, exclude=True)

    @property
    def duration(self) -> float:
        """Seconds the unit ran."""
        return self.ended - self.started


def placement() -> dict[str, str]:
    """Where this process runs: its SLURM job, node and GPUs (the :data:`PLACEMENT`
    variables that are set)."""
    return {k: os.environ[k] for k in PLACEMENT if os.environ.get(k)}


def accept() -> None:
    """Let :func:`execute` start units again (a new run in this process)."""
    _STOPPING.clear()


def terminate_all() -> int:
    """Terminate every running child process group (Ctrl-C, a full disk) and start no
    more units in this process until :func:`accept`; return how many were running."""
    _STOPPING.set()
    with _RUNNING_LOCK:
        procs = list(_RUNNING)
    for proc in procs:
        _kill_group(proc, signal.SIGTERM)
    return len(procs)


def _kill_group(proc: subprocess.Popen | WarmProcess, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _absolute_argv(argv: tuple[str, ...], project: Path) -> list[str]:
    """Point argv words that name project files at them (the unit runs elsewhere), and
    run ``python`` as the interpreter sweepflow itself runs on (its environment)."""
    out = []
    if argv and argv[0] in ("python", "python3"):
        argv = (sys.executable, *argv[1:])
    for word in argv:
        candidate = project / word
        out.append(str(candidate) if word and candidate.is_file() else word)
    return out


def _environment(spec: TrialSpec, workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(spec.env)
    env["SWEEPFLOW_TRIAL_DIR"] = str(workdir)
    env["SWEEPFLOW_REPORT"] = str(workdir / "report.jsonl")
    env["SWEEPFLOW_JOB"] = spec.job
    env["SWEEPFLOW_TRIAL"] = spec.digest
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = spec.project_dir + (os.pathsep + path if path else "")
    return env


def _pump(stream, sink, log: LogFn | None, prefix: str, failed: list[OSError]) -> None:
    """Copy the program's output to its log file (and ``log``) until it closes the pipe.

    A write that fails (a full disk) is recorded in ``failed`` and the rest of the output
    is still read, so that the program never blocks on a full pipe.
    """
    for line in iter(stream.readline, b""):
        if not failed:
            try:
                sink.write(line)
                sink.flush()
            except OSError as exc:
                failed.append(exc)
        if log:
            log(prefix + line.decode(errors="replace").rstrip("\n"))
    stream.close()


def _start(
    spec: TrialSpec, argv: list[str], cwd: Path, stdout: Any, stderr: Any
) -> subprocess.Popen | WarmProcess:
    """Start the unit's program: forked from a warm interpreter for ``preload``, else new."""
    env = _environment(spec, Path(spec.workdir))
    if spec.preload:
        return spawn(argv, spec.preload, cwd=cwd, env=env, stdout=stdout, stderr=stderr)
    return subprocess.Popen(  # no shell: argv items reach the program verbatim
        with_parent_death(argv, cwd, env),  # this thread waits for it: it dies with us
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,  # own process group: a timeout kills its children too
    )


def _run_process(spec: TrialSpec, argv: list[str], cwd: Path, log: LogFn | None) -> int:
    try:
        return _supervise(spec, argv, cwd, log)
    except WarmStartError as exc:
        raise TrialFailed(f"trial {spec.label!r}: {exc} (logs: {spec.workdir})") from None


def _supervise(spec: TrialSpec, argv: list[str], cwd: Path, log: LogFn | None) -> int:
    workdir = Path(spec.workdir)
    with (workdir / "stdout.log").open("wb") as out, (workdir / "stderr.log").open("wb") as err:
        proc = _start(
            spec, argv, cwd, subprocess.PIPE if log else out, subprocess.PIPE if log else err
        )
        with _RUNNING_LOCK:
            _RUNNING.add(proc)
        owned = Owned.of(proc.pid)  # pid, start time, own session: stop_orphan's proof
        if owned is not None:
            owned.write(workdir / "pid")
            Keeper.watch(owned)  # its group dies with this process, however it ends
        pumps = []
        failed: list[OSError] = []
        if log:
            # The caller's context (its Prefect run logger, settings) goes with the lines.
            pumps = [
                threading.Thread(
                    target=contextvars.copy_context().run,
                    args=(_pump, proc.stdout, out, log, "", failed),
                    daemon=True,
                ),
                threading.Thread(
                    target=contextvars.copy_context().run,
                    args=(_pump, proc.stderr, err, log, "[stderr] ", failed),
                ),
            ]
            for pump in pumps:
                pump.start()
        try:
            returncode = proc.wait(timeout=spec.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _kill_group(proc, signal.SIGKILL)
                proc.wait()
            raise TrialFailed(
                f"trial {spec.label!r} timed out after {spec.timeout:g} s; its process group "
                f"was killed (logs: {workdir})"
            ) from None
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(proc)
            for pump in pumps:
                pump.join()
            (workdir / "pid").unlink(missing_ok=True)  # ended: nothing left to stop
            Keeper.release(owned)
    if failed:
        if is_disk_full(failed[0]):
            raise TrialFailed(str(disk_full(workdir))) from failed[0]
        raise TrialFailed(f"could not write the logs of trial {spec.label!r}: {failed[0]}")
    return returncode


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _load_function(name: str, project: str) -> Callable[..., Any]:
    try:
        module_name, attr = call_target(name)
    except ValueError as exc:
        raise TrialFailed(f"call: {exc}") from None
    with _IMPORT_LOCK:
        if project not in sys.path:
            sys.path.insert(0, project)
        try:
            module = importlib.import_module(module_name)
            source = getattr(module, "__file__", None)
            if source and os.path.exists(source):
                stat = os.stat(source)
                seen = _LOADED.setdefault(source, (stat.st_mtime_ns, stat.st_size))
                if seen != (stat.st_mtime_ns, stat.st_size):  # edited since imported
                    module = importlib.reload(module)
                    _LOADED[source] = (stat.st_mtime_ns, stat.st_size)
        except ImportError as exc:
            raise TrialFailed(f"call: cannot import module '{module_name}': {exc}") from exc
    function = getattr(module, attr, None)
    if not callable(function):
        raise TrialFailed(f"call: module '{module_name}' has no function '{attr}'")
    return function


def _config_model(function: Callable[..., Any]) -> type[BaseModel] | None:
    """The pydantic model of a function's only parameter, if it is annotated with one."""
    parameters = list(inspect.signature(function).parameters.values())
    if len(parameters) != 1:
        return None
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # unresolvable annotations: fall back to key=value strings
        return None
    model = hints.get(parameters[0].name)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _call(spec: TrialSpec) -> Any:
    function = _load_function(spec.function, spec.project_dir)
    model = _config_model(function)
    if model is None:
        return function(list(spec.items))
    try:
        config = model.model_validate(unflatten(spec.params))
    except Exception as exc:
        raise TrialFailed(f"parameters do not fit {model.__name__}: {exc}") from exc
    return function(config)


def _metrics_of(value: Any) -> tuple[Any, dict[str, float]]:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    metrics = {}
    if isinstance(value, dict):
        metrics = {
            str(k): float(v)
            for k, v in value.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    return value, metrics


def _raise_if_pruned(workdir: Path) -> None:
    """A trial that stopped (any way) after its pruner said so was pruned, not failed."""
    step = read_report(workdir / "report.jsonl").pruned
    if step is not None:
        raise TrialPruned(f"pruned at step {step}")


def execute(spec: TrialSpec, log: LogFn | None = None) -> TrialResult:
    """Run one unit and return its result.

    The caller holds the unit's :func:`~sweepflow.execution.claims.claim` (the trial
    tasks do): a program a killed driver left in the folder is stopped first.

    Raises:
        TrialFailed: Non-zero exit (with the tail of stderr), timeout, or an exception
            raised by a ``call:`` function.
    """
    if _STOPPING.is_set():
        raise TrialFailed("cancelled: the run is stopping")
    workdir = Path(spec.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stop_orphan(workdir)
    (workdir / "report.jsonl").unlink(missing_ok=True)
    started = time.time()
    returncode, value = None, None
    metrics: dict[str, float] = {}
    if spec.kind == "call":
        try:
            with reporting_to(workdir / "report.jsonl", spec.env):
                value, metrics = _metrics_of(_call(spec))
        except Exception:
            _raise_if_pruned(workdir)
            raise
    else:
        project = Path(spec.project_dir)
        cwd = workdir
        if spec.kind == "submit":
            assert spec.param_file is not None
            param_file = Path(spec.param_file)
            param_file.parent.mkdir(parents=True, exist_ok=True)
            param_file.write_text("".join(line + "\n" for line in spec.lines))
            cwd = project  # the handler launches the program relative to the project
        returncode = _run_process(spec, _absolute_argv(spec.argv, project), cwd, log)
        if returncode != 0:
            _raise_if_pruned(workdir)
            tail = _tail(workdir / "stderr.log")
            what = "handler" if spec.kind == "submit" else "program"
            raise TrialFailed(
                f"{what} exited with code {returncode} (logs: {workdir})"
                + (f"\n{tail}" if tail else "")
            )
    report = read_report(workdir / "report.jsonl")
    if report.pruned is not None:
        raise TrialPruned(f"pruned at step {report.pruned}")
    reported = {point.name: point.value for point in report.metrics}
    return TrialResult(
        digest=spec.digest,
        cache_key=spec.cache_key,
        index=spec.index,
        params=spec.params,
        returncode=returncode,
        value=value,
        metrics={**reported, **metrics},
        started=started,
        ended=time.time(),
        workdir=str(workdir),
        host=socket.gethostname(),
        placement=placement(),
    )
