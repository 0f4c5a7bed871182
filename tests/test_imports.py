"""The core imports no heavy framework and has no side effect; the console script runs.

Importing sweepflow registers no exit or fork handler and starts no thread, and what a
trial program uses (``import sweepflow``, the reporting channel) loads no framework
and not even pydantic: every trial process pays for its imports.

Each check starts a fresh interpreter, so modules that pytest or other tests have
already imported cannot hide (or cause) a heavy import.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

# Libraries that only the module wrapping each of them may import, and only lazily:
# importing anything under src/sweepflow must load none of them.
HEAVY = ("prefect", "dask", "distributed", "jax", "mlflow", "optuna")

# Spies installed in a fresh interpreter before anything of sweepflow is imported. Each
# records, for what it sees, the innermost frame that belongs to a sweepflow module, so a
# failure names the line to fix: the first import of each watched library (sys.argv[1],
# comma-separated), every atexit and at-fork registration, and the threads started.
# `report(imported)` returns all of it as a dict for JSON.
_SPIES = r"""
import atexit, os, sys, threading

WATCHED = set(sys.argv[1].split(","))
culprits = {}
registered = {"atexit": [], "at_fork": []}
threads_before = {id(t) for t in threading.enumerate()}


def _where(depth):
    frame = sys._getframe(depth)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module == "sweepflow" or module.startswith("sweepflow."):
            return f"{module} ({frame.f_code.co_filename}:{frame.f_lineno})"
        frame = frame.f_back
    return "outside sweepflow"


class _ImportSpy:
    # Sees every import first and finds nothing itself, so the import goes on as usual.
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in WATCHED and top not in culprits:
            culprits[top] = _where(2)
        return None


def _spy(kind, real):
    # Wraps a registration function: every call through the module attribute is seen
    # (also `from os import register_at_fork`, done after this point).
    def register(*args, **kwargs):
        handlers = [a for a in (*args, *kwargs.values()) if callable(a)]
        name = getattr(handlers[0], "__qualname__", repr(handlers[0])) if handlers else "?"
        caller = sys._getframe(1).f_globals.get("__name__", "?")
        ours = caller == "sweepflow" or caller.startswith("sweepflow.")
        by = _where(1) if ours else f"{caller}, imported by {_where(1)}"
        registered[kind].append({"line": f"{name}, registered by {by}", "ours": ours})
        return real(*args, **kwargs)

    return register


sys.meta_path.insert(0, _ImportSpy())
atexit.register = _spy("atexit", atexit.register)
os.register_at_fork = _spy("at_fork", os.register_at_fork)
_callbacks_before = atexit._ncallbacks()


def report(imported):
    return {
        "imported": imported,
        "loaded": sorted({m.partition(".")[0] for m in sys.modules}),
        "culprits": culprits,
        "atexit": registered["atexit"],
        "atexit_added": atexit._ncallbacks() - _callbacks_before,
        "at_fork": registered["at_fork"],
        "threads": [t.name for t in threading.enumerate() if id(t) not in threads_before],
    }
"""

# Imports the named modules (all of sweepflow when none are named) and prints the report.
_PROBE = (
    _SPIES
    + r"""
import importlib, json, pkgutil

names = sys.argv[2:]
if not names:
    import sweepflow

    def _raise(name):
        raise ImportError(f"cannot import {name} while walking sweepflow")

    found = pkgutil.walk_packages(sweepflow.__path__, "sweepflow.", onerror=_raise)
    # A __main__ module runs the CLI when imported; it is run, not imported.
    names = ["sweepflow"] + sorted(m.name for m in found if not m.name.endswith(".__main__"))
for name in names:
    importlib.import_module(name)
print(json.dumps(report(names)))
"""
)

# Runs a user program (sys.argv[2]) as __main__ and prints the report.
_PROGRAM_PROBE = (
    _SPIES
    + r"""
import json

exec(compile(sys.argv[2], "<program>", "exec"), {"__name__": "__main__"})
print(json.dumps(report([sys.argv[2]])))
"""
)


def _environment(**settings: str) -> dict[str, str]:
    """This environment without ``SWEEPFLOW_*`` (a program run by hand), plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWEEPFLOW_")}
    return {**env, **settings}


def _spied(
    tmp_path: Path, script: str, args: list[str], env: dict[str, str] | None = None
) -> dict[str, object]:
    """Run a probe in a fresh interpreter outside the repository; return its report."""
    watched = ",".join((*HEAVY, "pydantic"))
    result = subprocess.run(
        [sys.executable, "-c", script, watched, *args],
        cwd=tmp_path,
        env=env or _environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"running {' '.join(args)!r} failed:\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def _probe(tmp_path: Path, *modules: str) -> dict[str, object]:
    """Import ``modules`` (all of sweepflow when none) in a fresh interpreter; report."""
    return _spied(tmp_path, _PROBE, list(modules))


def test_core_imports_no_heavy_library(tmp_path: Path) -> None:
    report = _probe(tmp_path)
    heavy = sorted(set(HEAVY) & set(report["loaded"]))
    if not heavy:
        return
    # Import the modules one at a time, each in its own interpreter, to name the ones
    # that pull a heavy library in by themselves.
    lines = []
    for module in report["imported"]:
        alone = _probe(tmp_path, module)
        for lib in sorted(set(HEAVY) & set(alone["loaded"])):
            lines.append(f"  {module} loads {lib}, imported by {alone['culprits'].get(lib)}")
    raise AssertionError(
        f"importing sweepflow loaded {', '.join(heavy)}; the core must import heavy "
        "libraries only inside functions of the one module that wraps each:\n" + "\n".join(lines)
    )


def _side_effects(report: dict[str, object], *, libraries: bool = True) -> list[str]:
    """Exit and fork handlers registered and threads started, one line each.

    With ``libraries=False``, handlers that a library registers when it is imported
    (``random`` reseeds in a forked child, ``logging`` resets its locks) are left out:
    only those registered by sweepflow's own code count.
    """
    problems = []
    for kind, what in (("atexit", "atexit handler"), ("at_fork", "at-fork handler")):
        problems += [
            f"  {what} {entry['line']}" for entry in report[kind] if libraries or entry["ours"]
        ]
    unseen = report["atexit_added"] - len(report["atexit"])
    if unseen > 0:  # registered without going through atexit.register (from C)
        problems.append(f"  {unseen} atexit handler(s) registered outside atexit.register")
    problems += [f"  thread {name!r} started" for name in report["threads"]]
    return problems


def test_core_import_registers_no_handler_and_starts_nothing(tmp_path: Path) -> None:
    # Every module of the core: handlers belong to first use (e.g. the warm zygotes of
    # execution/warm.py register theirs when the first one starts).
    problems = _side_effects(_probe(tmp_path), libraries=False)
    assert not problems, (
        "importing the core must register no exit or fork handler and start no thread; "
        "move these to first use:\n" + "\n".join(problems)
    )


# What a user's program does with sweepflow, and the libraries it must not load for it:
# every trial process pays for these imports (a short trial runs in ~50 ms).
_FRAMEWORKS = frozenset(HEAVY)
_PROGRAMS = [
    pytest.param("import sweepflow", _FRAMEWORKS | {"pydantic"}, False, id="import"),
    pytest.param(
        "import sweepflow\n"
        "sweepflow.log_metrics, sweepflow.log_params, sweepflow.log_artifact\n"
        "sweepflow.should_prune, sweepflow.TrialPruned, sweepflow.TrialFailed",
        _FRAMEWORKS | {"pydantic"},
        False,
        id="channel-names",
    ),
    pytest.param(
        "import sweepflow\n"
        "sweepflow.log_params({'lr': 0.1, 'model': {'depth': 3}})\n"
        "sweepflow.log_metrics({'x': 1.0}, step=0)\n"
        "sweepflow.log_artifact('.')\n"
        "assert sweepflow.should_prune() is False",
        _FRAMEWORKS | {"pydantic"},
        True,
        id="channel-calls-in-a-trial",
    ),
    # @sweepflow.main parses into the program's pydantic model: pydantic is expected.
    pytest.param("from sweepflow import main", _FRAMEWORKS, False, id="main"),
]


@pytest.mark.parametrize(("program", "forbidden", "in_trial"), _PROGRAMS)
def test_user_program_imports_little_and_starts_nothing(
    tmp_path: Path, program: str, forbidden: frozenset[str], in_trial: bool
) -> None:
    report_file = tmp_path / "report.jsonl"
    env = _environment(SWEEPFLOW_REPORT=str(report_file)) if in_trial else None
    report = _spied(tmp_path, _PROGRAM_PROBE, [program], env)

    problems = _side_effects(report)
    assert not problems, f"{program!r} must have no side effect:\n" + "\n".join(problems)
    loaded = sorted(forbidden & set(report["loaded"]))
    named = [f"  {lib}, imported by {report['culprits'].get(lib)}" for lib in loaded]
    assert not loaded, f"{program!r} loaded libraries it does not use:\n" + "\n".join(named)
    if in_trial:  # the calls did report, to the trial's file
        kinds = [json.loads(line)["kind"] for line in report_file.read_text().splitlines()]
        assert kinds == ["params", "metrics", "artifact"]


def test_public_names_are_loaded_on_first_use() -> None:
    import sweepflow
    from sweepflow.errors import SweepflowError
    from sweepflow.execution import trial

    assert set(sweepflow.__all__) <= set(dir(sweepflow))
    for name in sweepflow.__all__:
        assert getattr(sweepflow, name) is not None, name
    assert sweepflow.__version__ == version("sweepflow")
    assert sweepflow.TrialFailed is trial.TrialFailed
    assert sweepflow.TrialPruned is trial.TrialPruned
    assert issubclass(sweepflow.TrialPruned, sweepflow.TrialFailed)
    assert issubclass(sweepflow.TrialFailed, SweepflowError)
    assert issubclass(sweepflow.TrialFailed, RuntimeError)
    assert str(sweepflow.TrialPruned()) == "pruned by the search's pruner"
    with pytest.raises(AttributeError, match="no attribute 'log_metric'"):
        sweepflow.log_metric  # noqa: B018 - a misspelt name fails as usual


_PROFILES_PROBE = r"""
import json, sys
from sweepflow.spec.profiles import available_profiles, load_profile

for name in available_profiles():
    profile = load_profile(name, ["retries=1"])
    profile.resolved(), profile.cluster_kwargs("/tmp/state"), profile.adapt_kwargs()
    profile.worker_resources()
print(json.dumps(sorted({m.partition(".")[0] for m in sys.modules})))
"""


def test_profiles_load_without_dask_or_prefect(tmp_path: Path) -> None:
    # Only Profile.task_runner() and Profile.job_script() may import these.
    result = subprocess.run(
        [sys.executable, "-c", _PROFILES_PROBE],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    heavy = {*HEAVY, "dask_jobqueue", "prefect_dask"} & loaded
    assert not heavy, f"loading and resolving profiles imported {sorted(heavy)}"


def test_console_script_prints_version(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    script = shutil.which("sweepflow", path=str(bin_dir))
    assert script is not None, (
        f"no `sweepflow` console script in {bin_dir}; install the project with "
        "`pip install -e .` (or `make venv`) into this interpreter's environment"
    )
    result = subprocess.run(
        [script, "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (
        f"`sweepflow --version` exited {result.returncode}:\n{result.stderr}"
    )
    expected = version("sweepflow")
    assert expected in result.stdout, f"expected version {expected} in {result.stdout!r}"
