"""The core imports no heavy framework, and the installed console script runs.

Each check starts a fresh interpreter, so modules that pytest or other tests have
already imported cannot hide (or cause) a heavy import.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

# Libraries that only the module wrapping each of them may import, and only lazily:
# importing anything under src/sweepflow must load none of them.
HEAVY = ("prefect", "dask", "distributed", "jax", "mlflow", "optuna")

# Imports the named modules (all of sweepflow when none are named) in a fresh
# interpreter and prints, as JSON, the modules imported, the sorted top-level names in
# sys.modules, and for each heavy library the first sweepflow frame that imported it.
_PROBE = r"""
import importlib, json, pkgutil, sys

HEAVY = set(sys.argv[1].split(","))
culprits = {}


class _HeavyImportSpy:
    # Sees every import first and records where the first import of a heavy library
    # came from: the innermost frame that belongs to a sweepflow module.
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in HEAVY and top not in culprits:
            frame = sys._getframe(1)
            while frame is not None:
                module = frame.f_globals.get("__name__", "")
                if module == "sweepflow" or module.startswith("sweepflow."):
                    culprits[top] = f"{module} ({frame.f_code.co_filename}:{frame.f_lineno})"
                    break
                frame = frame.f_back
            else:
                culprits[top] = "outside sweepflow"
        return None


sys.meta_path.insert(0, _HeavyImportSpy())

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
loaded = sorted({m.partition(".")[0] for m in sys.modules})
print(json.dumps({"imported": names, "loaded": loaded, "culprits": culprits}))
"""


def _probe(tmp_path: Path, *modules: str) -> dict[str, object]:
    """Run the probe in a fresh interpreter outside the repository; return its report."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, ",".join(HEAVY), *modules],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (
        f"importing {' '.join(modules) or 'all of sweepflow'} failed:\n{result.stderr}"
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


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
