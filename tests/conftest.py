"""Shared fixtures: one real Prefect API for the session, and a fresh project per test.

Prefect's API takes 10-20 s to start in a process, so the flow tests share one (started
by ``prefect_test_harness``) and hand its URL to any ``sweepflow`` subprocess through
``PREFECT_API_URL``, so the child does not start its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# A `sweepflow run` without PREFECT_API_URL starts the project's warm Prefect server,
# which waits 20 minutes for the next run; a test's project is gone by then. Tests that
# check the warm server set their own idle time (tests/test_warm_server.py).
os.environ.setdefault("SWEEPFLOW_SERVER_IDLE", "10s")

# Environment the API (and the children that reach it) run under; set before Prefect
# reads its settings.
_PREFECT_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL": "WARNING",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_TASK_RUNS_LEVEL": "WARNING",
}


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect API (temporary SQLite database) for the whole session; its URL."""
    home = tmp_path_factory.mktemp("prefect-home")
    patch = pytest.MonkeyPatch()
    patch.setenv("PREFECT_HOME", str(home))
    for key, value in _PREFECT_ENV.items():
        patch.setenv(key, value)
    patch.delenv("PREFECT_API_URL", raising=False)
    import prefect.settings
    from prefect.testing.utilities import prefect_test_harness

    # Prefect may have been imported (and read its settings) before this fixture ran.
    updates = {
        prefect.settings.PREFECT_HOME: str(home),
        prefect.settings.PREFECT_SERVER_ANALYTICS_ENABLED: False,
    }
    try:
        with (
            prefect.settings.temporary_settings(updates=updates),
            prefect_test_harness(server_startup_timeout=120),
        ):
            url = prefect.settings.PREFECT_API_URL.value()
            assert url, "the Prefect test harness did not set PREFECT_API_URL"
            patch.setenv("PREFECT_API_URL", url)  # children reach this server
            yield url
    finally:
        patch.undo()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder as the working directory, with the default state folder
    (``<project>/.sweepflow``) and the default MLflow store inside it."""
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.delenv("SWEEPFLOW_HOME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return folder


SWEEPFLOW_ENV = ("SWEEPFLOW_REPORT", "SWEEPFLOW_TRIAL_DIR", "SWEEPFLOW_JOB", "SWEEPFLOW_TRIAL")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One real MLflow store (SQLite, path with a space) shared by a module's tests."""
    from sweepflow.tracking.uri import prepare_store

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow store') / 'mlflow.db'}"
    prepare_store(uri)
    return uri


@pytest.fixture
def by_hand(store: str, experiment_name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """No sweepflow environment, MLflow pointed at the module's store: as run by hand."""
    import mlflow

    for name in (*SWEEPFLOW_ENV, "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", experiment_name)
    yield store
    while mlflow.active_run():
        mlflow.end_run()


if TYPE_CHECKING:  # tests/ is on sys.path (rootdir conftest), so the helper imports as `browser`
    from browser import Browser


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium (see ``tests/browser.py``) shared by the session's tests.

    Skipped where no Chromium is installed, except under CI (``CI`` set), which must have
    installed it with ``.ci/install-chromium`` and so fails instead.
    """
    import os

    from browser import Browser, find_chromium

    binary = find_chromium()
    if binary is None:
        reason = (
            "no Chromium on PATH (chromium, chromium-browser or google-chrome); "
            "install it with .ci/install-chromium"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {reason}", pytrace=False)
        pytest.skip(reason)
    with Browser(binary) as opened:
        yield opened


SLURM_SKIP_REASON = (
    "no SLURM cluster: run scripts/slurm-up (root, Debian) or set SWEEPFLOW_START_SLURM=1"
)
_SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _usable_slurm_node() -> dict[str, str | int] | None:
    """The first node ``sinfo`` reports as able to run jobs, or None where no controller
    answers: ``{"node": name, "cpus": count, "gpus": count of gpu GRES}``."""
    import re
    import shutil
    import subprocess

    sinfo = shutil.which("sinfo")
    if sinfo is None:
        return None
    try:
        done = subprocess.run(
            [sinfo, "--noheader", "--Node", "--format=%N|%c|%G|%T"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    for line in done.stdout.splitlines():
        fields = line.split("|")
        # A state with a suffix ("idle*": not responding, "idle~": powered down) is unusable.
        if len(fields) != 4 or fields[3] not in {"idle", "mixed", "allocated", "completing"}:
            continue
        gpus = re.search(r"\bgpu(?::[^:,(]+)?:(\d+)", fields[2])
        return {"node": fields[0], "cpus": int(fields[1]), "gpus": int(gpus[1]) if gpus else 0}
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[dict[str, str | int]]:
    """A SLURM cluster that accepts jobs, as ``{"node", "cpus", "gpus"}`` of its first usable
    node.

    Uses whatever cluster ``sinfo`` answers for (normally the one ``scripts/slurm-up``
    started). Where none answers and ``SWEEPFLOW_START_SLURM=1`` (CI sets it), runs
    ``scripts/slurm-up`` (root or passwordless sudo; installs SLURM on Debian) and stops it
    with ``scripts/slurm-down`` at the end of the session; a failing start fails the tests.
    Otherwise the tests that use this fixture are skipped.
    """
    import os
    import subprocess
    import warnings

    node = _usable_slurm_node()
    if node is not None:
        yield node
        return
    if os.environ.get("SWEEPFLOW_START_SLURM") != "1":
        pytest.skip(SLURM_SKIP_REASON)
    up = _SCRIPTS / "slurm-up"
    try:
        done = subprocess.run([str(up)], capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"SWEEPFLOW_START_SLURM=1 but {up} ran over {error.timeout} s", pytrace=False)
    print(done.stdout, done.stderr, sep="")  # shown with a failing test's captured output
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        pytest.fail(
            f"SWEEPFLOW_START_SLURM=1 but {up} failed (exit {done.returncode}):\n{tail}",
            pytrace=False,
        )
    try:
        node = _usable_slurm_node()
        if node is None:
            pytest.fail(f"{up} succeeded but sinfo reports no usable node", pytrace=False)
        yield node
    finally:
        down = subprocess.run(
            [str(_SCRIPTS / "slurm-down")], capture_output=True, text=True, timeout=120, check=False
        )
        if down.returncode != 0:
            warnings.warn(
                f"scripts/slurm-down exited {down.returncode}:\n{down.stdout}{down.stderr}",
                RuntimeWarning,
                stacklevel=1,
            )


# The test pyramid: `make check` runs the fast tier (`-m "not e2e"`), `make test` all.
# A test is end-to-end when it needs a real service (the Prefect API, a browser, SLURM)
# or is marked as such; the rest test pure logic or one real library in-process.
_E2E_FIXTURES = {"prefect_api", "browser", "slurm_cluster"}
_E2E_MARKERS = {"slow", "slurm", "browser", "servers", "gpu", "e2e"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        marked = {mark.name for mark in item.iter_markers()}
        if fixtures & _E2E_FIXTURES or marked & _E2E_MARKERS:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def prefect_home(tmp_path: Path) -> Iterator[Path]:
    """A Prefect home of this test's own; the processes started with it are killed at
    the end (see ``tests/processes.py``)."""
    from processes import kill_all

    home = tmp_path / "prefect-home"
    home.mkdir()
    yield home
    kill_all(home)
