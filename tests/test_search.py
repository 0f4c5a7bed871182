"""Search spaces of ``optimize:`` jobs: sweep syntax to distributions, and bad input.

Fast: no Prefect, no MLflow. The Optuna side is only touched where a space meets a
sampler (a grid needs finite dimensions).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sweepflow.cli.main import main
from sweepflow.errors import JobError, JobFileError
from sweepflow.plan.expansion import compile_job
from sweepflow.plan.space import search_space
from sweepflow.spec.jobs import load_jobs


def _job(tmp_path: Path, space: str, **extra: str) -> Path:
    lines = [
        "jobs:",
        "  tune:",
        f"    {extra.pop('kind', 'run')}: {extra.pop('command', 'python train.py')}",
        "    optimize:",
        "      metric: loss",
        f"      space: {space!r}",
    ]
    lines += [f"      {k}: {v}" for k, v in extra.items() if k != "add"]
    if "add" in extra:
        lines.append(f"    add: {extra['add']}")
    path = tmp_path / "sweepflow.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _space(tmp_path: Path, space: str, overrides: tuple[str, ...] = (), **extra: str):
    job = load_jobs(_job(tmp_path, space, **extra)).job("tune")
    return search_space(compile_job(job, list(overrides)))


SPACES = [
    ("int-range", "layers=1:4", ("int", 1, 4, 1, False, None)),
    ("int-stepped", "units=16:128:16", ("int", 16, 128, 16, False, None)),
    ("float-continuous", "dropout=0:0.5", ("float", 0.0, 0.5, None, False, None)),
    ("float-stepped", "wd=0:1:0.25", ("float", 0.0, 1.0, 0.25, False, None)),
    ("log-uniform", "lr=log(1e-5:1e-1)", ("float", 1e-5, 0.1, None, True, None)),
    ("log-with-grid", "lr=log(1e-3:1:4)", ("float", 1e-3, 1.0, None, True, None)),
    ("lin-continuous", "t=lin(0.5:2)", ("float", 0.5, 2.0, None, False, None)),
    ("si-suffix", "steps=1:3:k", ("int", 1000, 3000, 1000, False, None)),
    ("key-suffix", "lr/m=1:5:2", ("float", 0.001, 0.005, 0.002, False, None)),
    ("count-down", "n=10:2:-3", ("int", 4, 10, 3, False, None)),
    ("categorical", "act=relu,gelu,tanh", ("categorical", None, None, None, False, None)),
]


@pytest.mark.parametrize(("space", "expected"), [s[1:] for s in SPACES], ids=[s[0] for s in SPACES])
def test_space_becomes_distributions(tmp_path: Path, space: str, expected: tuple) -> None:
    (dim,) = _space(tmp_path, space).dimensions
    kind, low, high, step, log, _ = expected
    assert (dim.kind, dim.low, dim.high, dim.step, dim.log) == (kind, low, high, step, log)


def test_categorical_choices_and_grid_values(tmp_path: Path) -> None:
    space = _space(tmp_path, "act=relu,gelu lr=log(1e-3:1:4) n=1:3 x=0.0:1.0")
    act, lr, n, x = space.dimensions
    assert act.choices == ("relu", "gelu") and act.grid == ("relu", "gelu")
    assert lr.grid == (0.001, 0.01, 0.1, 1.0)
    assert n.grid == (1, 2, 3)
    assert x.grid is None and space.grid_size() is None
    assert _space(tmp_path, "act=relu,gelu n=1:3").grid_size() == 6
    # Numbers where the text reads back unchanged (studies and plots show numbers).
    (mixed,) = _space(tmp_path, "v=1,0.5,1e-3,007,auto").dimensions
    assert mixed.choices == (1, 0.5, "1e-3", "007", "auto")


def test_fixed_values_come_from_space_add_and_overrides(tmp_path: Path) -> None:
    space = _space(
        tmp_path,
        "lr=log(1e-4:1e-1) layers=1:4 seed=7",
        ("layers=2", "act=relu,gelu"),
        add="epochs=5",
    )
    assert [d.key for d in space.dimensions] == ["lr", "act"]
    assert space.fixed == {"seed": "7", "layers": "2"}
    assert space.add == ("epochs=5",)


def test_dry_run_prints_the_space_and_a_trial(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _job(tmp_path, "lr=log(1e-4:1e-1) act=relu,gelu", add="epochs=5", n_trials="12")
    assert main(["run", "tune", "--dry-run", "layers=3"]) == 0
    out = capsys.readouterr().out
    assert "search: minimize loss over 12 trials (tpe sampler)" in out
    assert "lr: float in [0.0001, 0.1], log" in out
    assert "act: one of relu, gelu" in out
    assert "layers = 3 (fixed)" in out
    assert "python train.py lr=0.0001 act=relu layers=3 epochs=5" in out
    assert main(["run", "tune", "--dry-run", "--n-trials", "40"]) == 0
    assert "over 40 trials" in capsys.readouterr().out


BAD = [
    ("pipe", "a=1,2|3", "'|' alternatives are only allowed in 'each'"),
    ("log-nonpositive", "lr=log(0:1)", "log() bounds must be positive"),
    ("log-empty", "lr=log(1:1)", "must be below stop"),
    ("duplicate-key", "a=1:3 a=4:5", "sets key 'a' twice in its search space"),
    ("duplicate-value", "act=relu,relu", "lists a value twice"),
    ("continuous-in-list", "lr=log(1e-3:1),0.5", "mixes a continuous range with a list"),
    ("nothing", "a=1 b=x", "nothing to search"),
    ("bad-range", "a=1:x", "expected a number for the stop"),
]


@pytest.mark.parametrize(("space", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_spaces_are_one_clear_error(tmp_path: Path, space: str, message: str) -> None:
    with pytest.raises(JobError) as info:
        _space(tmp_path, space)
    text = str(info.value)
    assert message in text
    assert "jobs.tune.optimize" in text and "sweepflow.yaml:" in text  # where it is
    assert "\n" not in text


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("direction: up", "Invalid value for jobs.tune.optimize.direction at"),
        ("n_trials: 0", "jobs.tune.optimize.n_trials"),
        ("sampler: bayes", "expected 'tpe', 'random', 'cmaes', 'grid' or 'qmc'"),
        ("prune: median", "Unknown key 'prune' in jobs.tune.optimize at"),
    ],
    ids=["direction", "n_trials", "sampler", "unknown-key"],
)
def test_bad_optimize_settings(tmp_path: Path, yaml: str, message: str) -> None:
    key, value = yaml.split(": ")
    with pytest.raises(JobFileError) as info:
        load_jobs(_job(tmp_path, "a=1:3", **{key: value}))
    assert message in str(info.value)
    if key == "prune":
        assert "did you mean 'pruner'" in str(info.value)


def test_optimize_does_not_mix_with_sweeps(tmp_path: Path) -> None:
    path = tmp_path / "sweepflow.yaml"
    path.write_text(
        textwrap.dedent(
            """
            jobs:
              a:
                run: python train.py
                optimize: {metric: loss, space: x=0:1}
                sets:
                  - each: y=1,2
              b:
                submit: python handler.py
                optimize: {metric: loss, space: x=0:1}
            """
        )
    )
    jobs = load_jobs(path)
    with pytest.raises(JobError, match=r"sets with each: the search takes its parameters"):
        compile_job(jobs.job("a"))
    with pytest.raises(JobError, match=r"optimize: with submit:"):
        compile_job(jobs.job("b"))


def test_cli_refuses_bad_input_before_starting(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _job(tmp_path, "lr=log(1e-3:1) x=0:1", sampler="grid")
    assert main(["run", "tune"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "uses sampler: grid but 'lr' is continuous" in err
    assert not (tmp_path / ".sweepflow").exists()  # nothing started, nothing written
    assert main(["run", "tune", "lr=log(1e-3:1"]) == 2
    assert "unclosed '('" in capsys.readouterr().err
