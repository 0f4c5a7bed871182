"""``sweepflow llc run`` driven as a user drives it: a 2 x 2 matrix of quadratic targets
(whose λ is known exactly) x {SGLD, HMC} in a child process against the session's
Prefect API, read back from the table, the gallery, MLflow, the artifact store and
Prefect.

One project is run, re-run, given a third sampler and a changed target once for the
module (the ``ran`` fixture); each test reads what one of those runs did. The dask-local
test runs a 1 x 2 matrix of its own in worker processes. The bad-input tests need no
Prefect API: their runs stop before anything starts (or would fail on an address where
no API answers, rather than start a server of their own).
"""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_workflow_jobs import NO_API, mlflow_client, sweepflow, task_runs

TARGET_A = (
    "{model: {kind: quadratic, eigenvalues: [0.1, 1.0, 10.0], l0: 0.0, rotate: false}, "
    "data: {n: 1000}, precision: float64}"
)
TARGET_B = (
    "{model: {kind: quadratic, eigenvalues: [0.5, 2.0, 5.0, 20.0], l0: 0.0, rotate: false}, "
    "data: {n: 1000}, precision: float64}"
)
SGLD = "{kind: sgld, chains: 4, draws: 1000, step_size: 1e-4, seed: 0}"
HMC = "{kind: hmc, chains: 4, draws: 300, burn_in: 200, seed: 0}"
SGLD_2 = "{kind: sgld, chains: 4, draws: 1000, step_size: 5e-5, seed: 0}"


def experiments(name: str, targets: list[str], samplers: list[str]) -> str:
    """An experiments file's text."""
    return "\n".join(
        [
            f"experiment: {name}",
            "targets:",
            *(f"  - {t}" for t in targets),
            "samplers:",
            *(f"  - {s}" for s in samplers),
            "",
        ]
    )


# Relative error allowed against the exact λ (seeds fixed; the estimates land within
# ~9% (HMC) and ~12% (SGLD) of it over seeds 0-3, so these fail only when a sampler,
# the estimator or the beta/gamma wiring is wrong).
TOLERANCE = {"hmc": 0.15, "sgld": 0.30}
CORE_COLUMNS = ("target", "target_id", "sampler", "llc", "llc_sd", "ess", "rhat", "wall_s")
TABLE_LINE = re.compile(r"^table: (.+\.parquet)$", re.M)


def output(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout + done.stderr


def table_of(done: subprocess.CompletedProcess[str]) -> Any:
    """The ``llc_runs.parquet`` the command printed the path of, as a DataFrame."""
    import pandas as pd

    found = TABLE_LINE.search(output(done))
    assert found, output(done)
    return pd.read_parquet(found[1])


def check_estimates(table: Any) -> None:
    """Every λ̂ within its sampler kind's tolerance of the exact value."""
    for row in table.to_dict("records"):
        kind = row["sampler_kind"]
        error = abs(row["llc"] - row["llc_true"]) / row["llc_true"]
        assert error < TOLERANCE[kind], (row["target"], row["sampler"], row["llc"], error)


def artifacts(project: Path) -> list[dict[str, Any]]:
    listed = sweepflow(project, "artifacts", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    found: list[dict[str, Any]] = json.loads(listed.stdout)
    return found


def steps_run(project: Path, done: subprocess.CompletedProcess[str]) -> Counter[str]:
    """The task runs of the run's flow run, by step name (the steps that computed)."""
    found = re.search(r"/runs/flow-run/([0-9a-f-]{36})", output(done))
    assert found, output(done)
    return Counter(run.name.split("[")[0] for run in task_runs(found[1]))


@dataclass
class Ran:
    """What the module's runs did: each run's process, its table, and the store after it."""

    project: Path
    done: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    stored: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)

    def run(self, name: str, *args: str) -> None:
        self.done[name] = done = sweepflow(self.project, "llc", "run", "experiments.yaml", *args)
        self.stored[name] = artifacts(self.project)
        if done.returncode == 0:  # the next run writes over the table
            self.tables[name] = table_of(done)

    def ok(self, name: str) -> subprocess.CompletedProcess[str]:
        done = self.done[name]
        assert done.returncode == 0, output(done)
        return done


@pytest.fixture(scope="module")
def ran(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """The 2 x 2 matrix run, re-run, a third sampler added, then a target changed."""
    project = tmp_path_factory.mktemp("llc flow") / "project"
    project.mkdir()
    file = project / "experiments.yaml"
    file.write_text(experiments("quad", [TARGET_A, TARGET_B], [SGLD, HMC]))
    ran = Ran(project)
    ran.done["dry"] = sweepflow(project, "llc", "run", "experiments.yaml", "--dry-run", api=NO_API)
    ran.run("first", "--promote", "gallery")
    ran.run("second")
    file.write_text(experiments("quad", [TARGET_A, TARGET_B], [SGLD, HMC, SGLD_2]))
    ran.done["dry third"] = sweepflow(
        project, "llc", "run", "experiments.yaml", "--dry-run", api=NO_API
    )
    ran.run("third")
    ran.run("changed", "--set", "targets.1.data.n=500")
    return ran


# -- the first run: four pairs, the table, the estimates -------------------------------
def test_a_run_samples_every_pair_and_writes_the_table(ran: Ran) -> None:
    done = ran.ok("first")
    assert "4 done, 0 cached, 0 failed" in done.stderr, output(done)
    table = ran.tables["first"]
    assert len(table) == 4
    assert set(CORE_COLUMNS) | {"run_id", "llc_true", "step_size", "burn_in", "draws"} <= set(
        table.columns
    )
    pairs = set(zip(table["target"], table["sampler"], strict=True))
    assert {sampler for _, sampler in pairs} == {"sgld", "hmc"} and len(pairs) == 4
    assert table["target_id"].nunique() == 2
    assert table["run_id"].str.fullmatch(r"llc-run:[0-9a-f]{12}").all()
    by_kind = table.set_index("sampler_kind")
    assert (by_kind.loc["sgld", "step_size"] == 1e-4).all()
    assert by_kind.loc["hmc", "step_size"].isna().all()  # not an HMC setting
    check_estimates(table)
    # The exact values differ (d = 3 vs 4), so a swapped row would not pass the tolerance.
    assert sorted(table["llc_true"].round(3).unique()) == [0.827, 1.504]


def test_dry_run_lists_each_pair_as_to_run_then_cached(ran: Ran) -> None:
    before, after = ran.done["dry"], ran.done["dry third"]
    assert before.returncode == 0, output(before)
    assert sum(line.lstrip().startswith("to run ") for line in before.stdout.splitlines()) == 4
    assert before.stdout.rstrip().endswith("0 of 4 pairs cached"), before.stdout
    assert after.returncode == 0, output(after)
    lines = [line.split() for line in after.stdout.splitlines()]
    cached = [line[-1] for line in lines if line[:1] == ["cached"]]
    to_run = [line[-1] for line in lines if line[:2] == ["to", "run"]]
    assert sorted(cached) == ["hmc", "hmc", "sgld", "sgld"], after.stdout
    assert to_run == ["sgld-2", "sgld-2"], after.stdout
    assert after.stdout.rstrip().endswith("4 of 6 pairs cached")


def test_the_gallery_shows_each_pair_with_plots_that_exist(ran: Ran) -> None:
    done = ran.ok("first")
    gallery = ran.project / "gallery"
    assert f"gallery: {gallery / 'gallery.html'}" in output(done)
    html = (gallery / "gallery.html").read_text()
    markdown = (gallery / "gallery.md").read_text()
    images = re.findall(r'<img[^>]* src="([^"]+)"', html)
    assert len(images) == 4, html
    links = re.findall(r"\]\(([^)]+\.png)\)", markdown)
    assert len(links) >= 4, markdown
    for link in [*images, *links]:
        assert (gallery / link).is_file(), link
    for run_id in ran.tables["first"]["run_id"]:  # chosen by run record
        assert run_id in html or run_id.replace(":", "-") in html, run_id


def test_mlflow_has_a_parent_and_a_child_run_per_pair_with_plots(ran: Ran) -> None:
    ran.ok("first")
    client = mlflow_client(ran.project)
    experiment = client.get_experiment_by_name("quad")  # named by experiment:
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = sorted(
        (r for r in runs if r.data.tags.get("sweepflow.role") == "parent"),
        key=lambda r: r.info.start_time,
    )
    assert len(parents) == 4  # one per invocation: first, second, third, changed
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4
    table = ran.tables["first"]
    assert {(r.data.params["target"], r.data.params["sampler"]) for r in children} == set(
        zip(table["target"], table["sampler"], strict=True)
    )
    by_run = dict(zip(table["run_id"], table["llc"], strict=True))
    for run in children:
        assert run.info.status == "FINISHED"
        assert {"llc", "llc_sd", "llc_true", "ess", "rhat", "wall_s"} <= set(run.data.metrics)
        llc_run = run.data.tags["sweepflow.llc.run"]
        assert run.data.metrics["llc"] == pytest.approx(by_run[llc_run])
        plots = [a.path for a in client.list_artifacts(run.info.run_id, "plots")]
        assert "plots/running_llc.png" in plots, plots


def test_an_llc_run_traces_back_to_its_target(ran: Ran) -> None:
    ran.ok("first")
    stored = ran.stored["first"]
    targets = {a["digest"]: a for a in stored if a["type"] == "llc-target"}
    runs = [a for a in stored if a["type"] == "llc-run"]
    assert (len(targets), len(runs)) == (2, 4)
    parents: Counter[str] = Counter()
    for run in runs:
        done = sweepflow(ran.project, "artifacts", "lineage", run["id"], "--format", "json")
        assert done.returncode == 0, done.stderr
        edges = json.loads(done.stdout)["edges"]
        assert len(edges) == 1 and edges[0]["child"] == run["digest"], edges
        assert edges[0]["parent"] in targets and edges[0]["input"] == "target"
        parents[edges[0]["parent"]] += 1
    assert sorted(parents.values()) == [2, 2]  # each target feeds its two samplers


def test_each_target_is_built_once_and_each_pair_sampled_once(ran: Ran) -> None:
    done = ran.ok("first")
    assert steps_run(ran.project, done) == {"build_llc_target": 2, "sample_llc_target": 4}


# -- re-runs: nothing, only the new sampler, only the changed target -------------------
def test_a_rerun_computes_nothing_and_gives_the_same_table(ran: Ran) -> None:
    done = ran.ok("second")
    assert "0 done, 4 cached, 0 failed" in done.stderr, output(done)
    assert steps_run(ran.project, done) == {}
    assert ran.stored["second"] == ran.stored["first"]
    first, second = ran.tables["first"], ran.tables["second"]
    columns = ["target", "sampler", "run_id", "llc", "llc_sd", "ess", "rhat"]
    assert second[columns].to_dict("records") == first[columns].to_dict("records")


def test_a_new_sampler_runs_only_its_pairs(ran: Ran) -> None:
    done = ran.ok("third")
    assert "2 done, 4 cached, 0 failed" in done.stderr, output(done)
    assert steps_run(ran.project, done) == {"sample_llc_target": 2}  # no target built
    new = [a for a in ran.stored["third"] if a not in ran.stored["second"]]
    assert Counter(a["type"] for a in new) == {"llc-run": 2}
    table = ran.tables["third"]
    assert len(table) == 6 and (table["sampler"] == "sgld-2").sum() == 2
    check_estimates(table)


def test_a_changed_target_is_rebuilt_and_only_its_pairs_resampled(ran: Ran) -> None:
    done = ran.ok("changed")
    assert "3 done, 3 cached, 0 failed" in done.stderr, output(done)
    assert steps_run(ran.project, done) == {"build_llc_target": 1, "sample_llc_target": 3}
    new = [a for a in ran.stored["changed"] if a not in ran.stored["third"]]
    assert Counter(a["type"] for a in new) == {"llc-target": 1, "llc-run": 3}
    table = ran.tables["changed"]
    before = ran.tables["third"]
    changed = table[table["target_id"] != before["target_id"][0]]
    assert set(changed["n"]) == {500} and len(changed) == 3
    kept = table[table["target_id"] == before["target_id"][0]]
    assert list(kept["run_id"]) == list(before["run_id"][:3])  # target 0's runs reused
    check_estimates(table)


# -- dask-local: the pairs in worker processes -----------------------------------------
# Worker processes get the profile's worker_env; the step's provenance records
# CUDA_VISIBLE_DEVICES (a placement variable) where it ran, so it shows up only for steps
# that ran in a worker, not in the driver (whose environment lacks it).
DASK_PROFILE = """
type: dask-local
workers: 2
threads_per_worker: 1
processes: true
worker_env:
  CUDA_VISIBLE_DEVICES: "-1"
"""


@pytest.mark.usefixtures("prefect_api")
def test_dask_local_samples_the_pairs_in_worker_processes(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "profiles").mkdir()
    (project / "profiles" / "dask-local.yaml").write_text(textwrap.dedent(DASK_PROFILE))
    (project / "experiments.yaml").write_text(experiments("quad-dask", [TARGET_A], [SGLD, HMC]))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # the driver has none

    done = sweepflow(project, "llc", "run", "experiments.yaml", "--profile", "dask-local")

    assert done.returncode == 0, output(done)
    assert "2 done, 0 cached, 0 failed" in done.stderr, output(done)
    table = table_of(done)
    assert len(table) == 2
    check_estimates(table)
    assert steps_run(project, done) == {"build_llc_target": 1, "sample_llc_target": 2}
    from sweepflow.store import ObjectStore

    store = ObjectStore(project / ".sweepflow" / "store")
    stored = artifacts(project)
    assert len(stored) == 3
    for made in stored:
        placement = store.get(made["digest"]).meta.provenance.placement
        assert placement.get("CUDA_VISIBLE_DEVICES") == "-1", (made["id"], placement)


# -- bad input: one line, before anything runs ------------------------------------------
@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        pytest.param(
            ["--set", "targets.0.precision=float32"],
            ["pair (quadratic-", ", hmc) in experiments.yaml", "float64", "kind: sgld"],
            id="hmc-on-float32",
        ),
        pytest.param(
            ["--set", "samplers.0.step_sise=1e-4"],
            ["Unknown key 'step_sise'", "did you mean 'step_size'"],
            id="unknown-set-key",
        ),
        pytest.param(
            ["--set", "bogus=1"], ["Unknown --set path 'bogus'", "targets."], id="unknown-set-path"
        ),
    ],
)
def test_bad_input_is_one_line_before_anything_runs(
    project: Path, sets: list[str], expected: list[str]
) -> None:
    (project / "experiments.yaml").write_text(experiments("quad", [TARGET_A], [SGLD, HMC]))
    done = sweepflow(project, "llc", "run", "experiments.yaml", *sets, api=NO_API)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for part in expected:
        assert part in lines[0], lines[0]
    assert "Traceback" not in output(done)
    assert not (project / ".sweepflow").exists()  # nothing ran, nothing stored
