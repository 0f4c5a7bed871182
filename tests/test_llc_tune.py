"""`sweepflow llc tune`: an Optuna search of a sampler against a cached reference λ.

One quadratic float64 target (exact λ known), tiny runs. The reference HMC run is an
``llc-run`` in the project's store, made by the first invocation and reused by the next;
the study is continued to ``--n-trials``; a space naming beta or gamma is refused on one line
before anything is written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import optuna
import pytest

from sweepflow.cli.main import main
from sweepflow.store import Catalog, ObjectStore
from sweepflow.workflow.executor import artifact
from sweepflow.workflow.run import store_root
from sweepflow.workloads.llc import LLCError
from sweepflow.workloads.llc._sampler_config import SGLDConfig
from sweepflow.workloads.llc.steps import load_run
from sweepflow.workloads.llc.tune import objective, tuning_space

EXPERIMENTS = """\
experiment: tiny
targets:
  - model: {kind: quadratic, eigenvalues: [0.1, 1.0, 10.0], l0: 0.0, rotate: false}
    data: {n: 1000}
    precision: float64
samplers:
  - {kind: sgld, chains: 2, draws: 100, burn_in: 20, step_size: 1.0e-4, gamma: 1.0}
"""
TRIAL = re.compile(r"^trial (\d+): objective (\S+)  (.*)  \((.*)\)$", re.MULTILINE)
BEST = re.compile(r"^best: trial (\d+), objective (\S+): (.*)$", re.MULTILINE)
SPACE = "step_size=log(1e-5:1e-3) batch_size=32,64"


def _tune(capsys: pytest.CaptureFixture, *extra: str, n: int = 3) -> tuple[int, str, str]:
    argv = ["llc", "tune", "experiments.yaml", "--sampler", "sgld", "--n-trials", str(n)]
    code = main([*argv, "--reference-draws", "100", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _runs(state: Path) -> dict[str, list[dict[str, Any]]]:
    """The store's llc-run payloads by sampler kind."""
    root = store_root(state)
    store, found = ObjectStore(root), {}
    with Catalog(root) as catalog:
        for row in catalog.atoms(type="llc-run"):
            made = artifact(store.get(row["digest"]))
            run = load_run(made.path)
            found.setdefault(run.sampler.kind, []).append(run.sampler.model_dump())
    return found


def _trials(project: Path) -> list[optuna.trial.FrozenTrial]:
    path = project / ".sweepflow" / "studies" / "llc-tune-tiny-sgld.journal"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    return optuna.load_study(study_name="llc-tune-tiny-sgld", storage=storage).trials


def test_tuning_reuses_its_reference_and_resumes_to_n(
    project: Path, capsys: pytest.CaptureFixture
) -> None:
    (project / "experiments.yaml").write_text(EXPERIMENTS, encoding="utf-8")
    state = project / ".sweepflow"

    code, out, err = _tune(capsys, "--space", SPACE)
    assert code == 0, err
    assert len(TRIAL.findall(out)) == 3, out
    best = BEST.search(out)
    assert best, out
    values = {int(n): float(v) for n, v, _, _ in TRIAL.findall(out)}
    assert float(best.group(2)) == pytest.approx(min(values.values()), rel=1e-3)
    assert "batch_size=" in best.group(3) and "step_size=" in best.group(3)
    ref = re.search(r"^reference \S+: λ_ref = (\S+) .*exact (\S+) \(hmc 4 x 100, ran in", out, re.M)
    assert ref, out
    assert float(ref.group(1)) == pytest.approx(float(ref.group(2)), abs=0.5)  # λ = 1.46
    first = _runs(state)
    assert len(first["hmc"]) == 1
    assert first["hmc"][0]["gamma"] == 1.0 and first["hmc"][0]["beta"] is None  # the sgld's

    # The same N again: the reference is a store hit and no trial is asked.
    code, out, err = _tune(capsys, "--space", SPACE)
    assert code == 0, err
    assert re.search(r"^reference \S+: λ_ref = .*\(hmc 4 x 100, reused, llc-run:", out, re.M), out
    assert TRIAL.findall(out) == [] and "3 trial(s) before, 0 to run" in out
    assert BEST.search(out) and BEST.search(out).group(0) == best.group(0)  # type: ignore[union-attr]
    assert len(_trials(project)) == 3
    assert len(_runs(state)["hmc"]) == 1

    # N + 2: two more trials, the reference still the one stored.
    code, out, err = _tune(capsys, "--space", SPACE, n=5)
    assert code == 0, err
    assert [int(t[0]) for t in TRIAL.findall(out)] == [3, 4], out
    trials = _trials(project)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 5
    runs = _runs(state)
    assert len(runs["hmc"]) == 1
    # every trial's run is in the store: one llc-run per distinct param set
    assert len(runs["sgld"]) == len({tuple(sorted(t.params.items())) for t in trials})


@pytest.mark.parametrize(
    ("space", "key"),
    [
        ("gamma=1:10", "gamma"),
        ("step_size=log(1e-5:1e-3) beta=0.1,0.2", "beta"),
        ("model=a,b", "model"),
    ],
    ids=["gamma", "beta", "target-key"],
)
def test_a_space_naming_the_estimand_is_refused(
    project: Path, capsys: pytest.CaptureFixture, space: str, key: str
) -> None:
    (project / "experiments.yaml").write_text(EXPERIMENTS, encoding="utf-8")
    code, out, err = _tune(capsys, "--space", space)
    assert code != 0
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: --space names '{key}'")
    assert "defines the estimand" in lines[0] and "Traceback" not in err
    assert sorted(p.name for p in project.iterdir()) == ["experiments.yaml"]  # nothing made


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("step_sise=log(1e-5:1e-3)", "not a setting of sgld sampler 'sgld' — did you mean"),
        ("kind=sgld,hmc", "tune one sampler at a time"),
        ("step_size=log(1e-5:1e-3", "syntax error: unclosed '('"),
        ("step_size=-1:1", "greater than 0"),
        ("draws=100", "nothing to search"),
    ],
    ids=["unknown-key", "kind", "syntax", "bad-value", "nothing-searched"],
)
def test_a_bad_space_is_one_line(space: str, message: str) -> None:
    with pytest.raises(LLCError, match=re.escape(message)):
        tuning_space(space, SGLDConfig(), "sgld")


def test_the_default_sgld_space_searches_step_batch_and_preconditioner() -> None:
    space = tuning_space(
        "step_size=log(1e-5:1e-3) batch_size=32,64 precondition=none,rmsprop draws=50",
        SGLDConfig(),
        "sgld",
    )
    assert [d.key for d in space.dimensions] == ["step_size", "batch_size", "precondition"]
    assert space.fixed == {"draws": "50"}


@pytest.mark.parametrize(
    ("errors", "work", "huber", "per_work", "expected"),
    [
        ([0.1, -0.3], [1e3, 1e3], None, False, 0.2),
        ([0.5], [1e3], 1.0, False, 0.125),
        ([-3.0], [1e3], 1.0, False, 2.5),
        ([0.2], [1e4], None, True, 0.8),
    ],
    ids=["abs", "huber-inside", "huber-outside", "per-work"],
)
def test_objective(
    errors: list[float], work: list[float], huber: float | None, per_work: bool, expected: float
) -> None:
    assert objective(errors, work, huber, per_work) == pytest.approx(expected)
