"""What a user sees of a sweep in the MLflow and Prefect UIs, in a real (headless) browser.

Once for the module: ``sweepflow up`` starts the project's Prefect server and MLflow UI
on free ports (no worker), ``sweepflow run`` runs a small sweep that reports to them and
prints their links, and ``sweepflow down`` stops them at the end, whatever happened.
Each test opens a printed link, waits for the page to render, saves a screenshot in its
tmp folder, and asserts what is on screen: MLflow in its model-training view with the
sweep's child runs and their metric, and the Prefect flow run's trials table with the
target metric in the first metric column.

The trial reports ``val_loss`` first and ``acc`` second: the target metric (a sweep's
first reported) is not the alphabetically first one, so a table sorted by name fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser import Browser

from sweepflow.services.files import free_ports

pytestmark = [pytest.mark.browser, pytest.mark.servers]

ROOT = Path(__file__).resolve().parents[1]

OBJECTIVE = """
def fit(args):
    params = dict(item.split("=", 1) for item in args)
    lr, width = float(params["lr"]), int(params["width"])
    return {"val_loss": lr * 100 + 1 / width, "acc": 1 - lr}
"""
JOBS = """jobs:
  train:
    call: objective:fit
    sets:
      - all: lr=0.1,0.02 width=8,16
"""
# val_loss of each trial (in the grid's order), as MLflow's runs table and Prefect's
# artifact show it.
VAL_LOSS = {"lr=0.1 width=8": "10.125", "lr=0.1 width=16": "10.0625"}
VAL_LOSS |= {"lr=0.02 width=8": "2.125", "lr=0.02 width=16": "2.0625"}

# Entries of MLflow 3's sidebar in each of its two modes (the "GenAI" / "Model training"
# switch at its top); a new experiment's page opens in GenAI mode unless told otherwise.
GENAI_ONLY = ("Sessions", "Judges", "Evaluation runs", "Agent versions", "AI Gateway")
TRAINING_ONLY = ("Models", "Model registry")

# The rows of MLflow's runs table by AG Grid row index: the run name, whether the name
# cell has the expander of a parent run, and the val_loss cell (when that column shows).
_RUN_ROWS = r"""(() => {
  const rows = {};
  for (const cell of document.querySelectorAll('[role=gridcell][col-id]')) {
    const row = cell.closest('[role=row]');
    const index = row && row.getAttribute('row-index');
    if (index === null) continue;
    const entry = rows[index] = rows[index] || {};
    const column = cell.getAttribute('col-id');
    if (column === 'attributes.`Run Name`') {
      entry.name = cell.innerText.trim().split('\n').pop();
      entry.parent = cell.querySelector('button') !== null;
    }
    if (column === 'metrics.`val_loss`') entry.val_loss = cell.innerText.trim();
  }
  return Object.values(rows);
})()"""
_RUN_NAME_CELL = '[role=gridcell][col-id="attributes.`Run Name`"]'


@dataclass(frozen=True)
class Swept:
    """The sweep's project, what ``sweepflow run`` printed, and its UI links."""

    folder: Path
    output: str
    mlflow: str  # the experiment's runs view, as `sweepflow run` prints it
    prefect: str  # the flow run's page


def _sweepflow(folder: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m sweepflow ARGS`` in ``folder``, as a user in a fresh shell: no
    Prefect API or MLflow store configured, so the run reports to the project's servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.pop("SWEEPFLOW_HOME", None)
    env |= {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "COLUMNS": "200"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    command = [sys.executable, "-m", "sweepflow", *args]
    return subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout
    )


def _link(output: str, label: str) -> str:
    found = re.search(rf"^{label}: (http\S+)$", output, re.MULTILINE)
    assert found, f"`sweepflow run` printed no '{label}: <url>' line:\n{output}"
    return found[1]


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swept]:
    """A sweep run by ``sweepflow run`` against ``sweepflow up``'s servers (stopped
    afterwards by ``sweepflow down``)."""
    folder = tmp_path_factory.mktemp("views") / "my project"
    folder.mkdir()
    (folder / "objective.py").write_text(OBJECTIVE)
    (folder / "sweepflow.yaml").write_text(JOBS)
    prefect_port, mlflow_port = free_ports(2)
    ports = ["--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port)]
    try:
        up = _sweepflow(folder, "up", *ports, "--no-worker")
        assert up.returncode == 0, f"sweepflow up failed:\n{up.stdout}\n{up.stderr}"
        run = _sweepflow(folder, "run", "train")
        assert run.returncode == 0, f"sweepflow run failed:\n{run.stdout}\n{run.stderr}"
        output = run.stdout + run.stderr
        assert "4 done" in output, output
        mlflow, prefect = _link(output, "MLflow"), _link(output, "Prefect")
        assert mlflow.startswith(f"http://127.0.0.1:{mlflow_port}/"), mlflow
        assert prefect.startswith(f"http://127.0.0.1:{prefect_port}/runs/flow-run/"), prefect
        yield Swept(folder, output, mlflow, prefect)
    finally:
        down = _sweepflow(folder, "down", timeout=120)
        assert down.returncode == 0, f"sweepflow down failed:\n{down.stdout}\n{down.stderr}"


@pytest.fixture
def wide(browser: Browser) -> Iterator[Browser]:
    """The session's browser at 1920 x 1080 for this test: MLflow's runs table renders
    only the columns that fit (a metric column comes after six others)."""
    before = browser.resize(1920, 1080)
    try:
        yield browser
    finally:
        browser.resize(*before)


def _sidebar(browser: Browser) -> list[str]:
    """The lines of MLflow's sidebar (the mode switch, the experiment's pages)."""
    lines = browser.evaluate("[...document.querySelectorAll('aside')].map(a => a.innerText)")
    return [line.strip() for text in lines or [] for line in text.splitlines() if line.strip()]


def _open_runs(browser: Browser, swept: Swept) -> None:
    """The printed MLflow link, its runs table rendered: the parent and its 4 trials."""
    browser.open(swept.mlflow)
    browser.wait_for_text("5 matching runs")
    browser.wait_for(f"!!document.querySelector({_RUN_NAME_CELL!r})")


def test_mlflow_opens_in_the_model_training_view(
    wide: Browser, swept: Swept, tmp_path: Path
) -> None:
    browser = wide
    _open_runs(browser, swept)
    sidebar = _sidebar(browser)
    browser.screenshot(tmp_path / "mlflow-experiment.png")
    genai = [entry for entry in GENAI_ONLY if entry in sidebar]
    assert not genai, (
        f"{swept.mlflow} opens in MLflow's GenAI mode (its sidebar shows {genai}), not the "
        f"model-training view of runs; sidebar: {sidebar}"
    )
    assert set(TRAINING_ONLY) <= set(sidebar), sidebar
    assert "Runs" in sidebar, sidebar  # the experiment's runs page, not "Training runs"


def test_mlflow_lists_the_child_runs_with_their_metric(
    wide: Browser, swept: Swept, tmp_path: Path
) -> None:
    browser = wide
    _open_runs(browser, swept)
    rows = browser.evaluate(_RUN_ROWS)
    assert [row["parent"] for row in rows] == [True], rows  # one sweep, its trials folded
    browser.click(f"{_RUN_NAME_CELL} button")  # unfold the sweep's parent run
    browser.wait_for(f"document.querySelectorAll({_RUN_NAME_CELL!r}).length === 5")
    # Show the val_loss column: Columns > Metrics > val_loss.
    browser.click("[data-testid=column-selection-dropdown]", "Columns")
    browser.click(".du-bois-light-tree-treenode .du-bois-light-tree-title", "val_loss")
    browser.click("[data-testid=column-selection-dropdown]", "Columns")  # closes the menu
    browser.wait_for("!document.querySelector('input[placeholder=\"Search columns\"]')")
    browser.wait_for("document.querySelectorAll('[col-id=\"metrics.`val_loss`\"]').length >= 6")
    browser.screenshot(tmp_path / "mlflow-child-runs.png")
    rows = browser.evaluate(_RUN_ROWS)
    children: list[dict[str, Any]] = [row for row in rows if not row["parent"]]
    assert len(children) == 4, rows
    assert sorted(row["val_loss"] for row in children) == sorted(VAL_LOSS.values()), rows
    # Child run names are the trials' labels, being reworked elsewhere; once settled,
    # assert them here: {row["name"]: row["val_loss"] for row in children} == VAL_LOSS.


def test_prefect_flow_run_shows_the_trials_table_target_metric_first(
    browser: Browser, swept: Swept, tmp_path: Path
) -> None:
    browser.open(swept.prefect)
    browser.wait_for_text("Completed", "Artifacts")
    browser.click("[role=tablist] [role=tab], [role=tablist] li", "Artifacts")
    browser.wait_for_text("trials-train")
    browser.screenshot(tmp_path / "prefect-artifacts.png")
    browser.click("a[href*='/artifacts/artifact/']", None)
    browser.wait_for_text("metric.val_loss")
    browser.wait_for("document.querySelectorAll('table tbody tr').length === 4")
    browser.screenshot(tmp_path / "prefect-trials-table.png")
    header = browser.evaluate("[...document.querySelectorAll('table th')].map(e => e.innerText)")
    header = [cell.strip() for cell in header]
    metrics = [name for name in header if name.startswith("metric.")]
    assert metrics == ["metric.val_loss", "metric.acc"], header  # the target metric first
    cells = browser.evaluate(
        "[...document.querySelectorAll('table tbody tr')]"
        ".map(r => [...r.querySelectorAll('td')].map(e => e.innerText.trim()))"
    )
    shown = {row[header.index("trial")]: row[header.index("metric.val_loss")] for row in cells}
    assert shown == dict(zip("0123", VAL_LOSS.values(), strict=True)), cells  # grid order
