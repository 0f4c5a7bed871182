"""``sweepflow plot`` and the plot a sweep attaches to its MLflow parent run and its
Prefect flow run: the pure series/scale rules first, then real sweeps."""

from __future__ import annotations

import logging
import math
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sweepflow.reporting.plots import (
    PlotError,
    auto_axes,
    chart,
    figure,
    file_name,
    is_repeat,
    publish_sweep_plot,
    render,
    scale,
)

# -- the pure rules ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([1e-4, 1e-3, 1e-2, 1e-1], "log", id="four-decades"),
        pytest.param([1, 100], "log", id="exactly-two-decades"),
        pytest.param([1, 99.9], "linear", id="under-two-decades"),
        pytest.param([0, 1, 1000], "linear", id="zero"),
        pytest.param([-1, 10, 1000], "linear", id="negative"),
        pytest.param([5.0], "linear", id="one-value"),
        pytest.param([], "linear", id="empty"),
        pytest.param([1, math.inf, 1000], "log", id="inf-ignored"),
    ],
)
def test_scale(values: list[float], expected: str) -> None:
    assert scale(values) == expected


def _grid(by_seed: dict[str, list[float]]) -> list[tuple[dict[str, str], dict[str, float]]]:
    """lr -> the loss of seed 0, 1, ... (with a constant param and an extra metric)."""
    return [
        ({"lr": lr, "seed": str(seed), "epochs": "3"}, {"loss": loss, "acc": 0.5})
        for lr, losses in by_seed.items()
        for seed, loss in enumerate(losses)
    ]


def test_chart_means_and_min_max_bands() -> None:
    points = _grid({"0.1": [2.0, 4.0, 9.0], "1e-4": [1.0, 1.0, 4.0], "0.01": [3.0, 5.0, 7.0]})
    points.append(({"lr": "1e-1", "seed": "3", "epochs": "3"}, {"loss": 1.0}))  # 0.1 again
    points.append(({"lr": "0.01", "seed": "4", "epochs": "3"}, {"loss": math.nan}))  # left out
    data = chart(points, "lr", "loss")
    (line,) = data.series
    assert line.label is None and line.xs == (1e-4, 0.01, 0.1)  # by value, 1e-1 == 0.1
    assert line.mean == pytest.approx((2.0, 5.0, 4.0))
    assert line.low == (1.0, 3.0, 1.0) and line.high == (4.0, 7.0, 9.0)
    assert line.counts == (3, 3, 4)
    assert (data.xscale, data.yscale) == ("log", "linear")
    assert data.repeats == ("seed",) and data.trials == 10 and data.categories is None


def test_chart_by_draws_one_line_per_value() -> None:
    points = _grid({"1e-3": [1.0, 10.0], "1": [100.0, 300.0]})
    data = chart(points, "lr", "loss", by="seed")
    assert [s.label for s in data.series] == ["seed=0", "seed=1"]
    assert [s.mean for s in data.series] == [(1.0, 100.0), (10.0, 300.0)]
    assert [s.counts for s in data.series] == [(1, 1), (1, 1)]
    assert (data.xscale, data.yscale) == ("log", "log") and data.repeats == ()


def test_chart_non_numeric_x_is_categorical() -> None:
    points = [({"model": m}, {"loss": v}) for m, v in [("mlp", 1.0), ("cnn", 2.0), ("mlp", 3.0)]]
    data = chart(points, "model", "loss")
    assert data.categories == ("mlp", "cnn")  # as the trials have them
    assert data.series[0].xs == ("mlp", "cnn") and data.series[0].mean == (2.0, 2.0)
    assert data.xscale == "linear"


@pytest.mark.parametrize(
    ("x", "y", "by", "message"),
    [
        pytest.param("lrr", "loss", None, "--x 'lrr': no finished trial has the parameter 'lrr'; "
                     "did you mean 'lr'? parameters: epochs, lr, seed", id="x"),
        pytest.param("lr", "los", None, "--y 'los': no finished trial has the metric 'los'; "
                     "did you mean 'loss'? metrics: acc, loss", id="y"),
        pytest.param("lr", "loss", "sed", "--by 'sed': no finished trial has the parameter "
                     "'sed'; did you mean 'seed'?", id="by"),
    ],
)  # fmt: skip
def test_chart_unknown_keys(x: str, y: str, by: str | None, message: str) -> None:
    with pytest.raises(PlotError) as caught:
        chart(_grid({"0.1": [1.0]}), x, y, by, flags=("--x", "--y", "--by"))
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("points", "target", "expected"),
    [
        pytest.param(_grid({"0.1": [1, 2], "0.01": [3, 4]}), None, ("lr", "loss"), id="seeds"),
        pytest.param(_grid({"0.1": [1], "0.01": [3]}), "acc", ("lr", "acc"), id="target"),
        pytest.param(_grid({"0.1": [1], "0.01": [3]}), "nope", ("lr", "loss"), id="no-target"),
        pytest.param(_grid({"0.1": [1, 2]}), None, None, id="only-seeds-vary"),
        pytest.param(
            [({"lr": lr, "m": m}, {"loss": 1.0}) for lr in ("1", "2") for m in ("a", "b")],
            None,
            None,
            id="two-vary",
        ),
        pytest.param([({"m": m}, {"loss": 1.0}) for m in ("a", "b")], None, None, id="not-numeric"),
        pytest.param([({"lr": lr}, {}) for lr in ("1", "2")], None, None, id="no-metric"),
        pytest.param(
            [({"lr": lr}, {"loss": math.nan}) for lr in ("1", "2")], None, None, id="nan-metric"
        ),
        pytest.param([], None, None, id="no-trial"),
    ],
)
def test_auto_axes(points: list[Any], target: str | None, expected: Any) -> None:
    assert auto_axes(points, target) == expected


def test_repeats_and_file_names() -> None:
    assert [is_repeat(k) for k in ("seed", "data.seed", "SEED", "repeat", "n_seeds")] == [
        True,
        True,
        True,
        True,
        False,
    ]
    assert file_name("fit", "val/loss", "model.lr") == "fit-val_loss-vs-model.lr.png"


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, checking its signature and IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", head
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_render_writes_a_png(tmp_path: Path) -> None:
    data = chart(_grid({"1e-4": [1.0, 2.0], "1e-1": [3.0, 5.0]}), "lr", "loss", "seed")
    path = render(data, tmp_path / "sub" / "p.png", "fit: sweep abc")
    assert path.is_file() and _png_size(path) == (700, 460)
    assert 10_000 < path.stat().st_size < 500_000
    assert [p.name for p in path.parent.iterdir()] == ["p.png"]  # no temporary left


def test_figure_axes() -> None:
    """What a reader sees: log x with its label, a legend per --by value, the title;
    a categorical x keeps its names as tick labels."""
    data = chart(_grid({"1e-4": [1.0, 2.0], "1e-1": [3.0, 5.0]}), "lr", "loss", "seed")
    (axes,) = figure(data, "fit: sweep abc").axes
    assert (axes.get_xscale(), axes.get_yscale()) == ("log", "linear")
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("lr (log scale)", "loss")
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["seed=0", "seed=1"]
    assert axes.get_title() == "fit: sweep abc\n4 trials"

    points = [({"model": m, "seed": s}, {"acc": 1.0}) for m in ("mlp", "cnn") for s in "01"]
    (axes,) = figure(chart(points, "model", "acc"), "t").axes
    axes.figure.canvas.draw()
    assert [t.get_text() for t in axes.get_xticklabels()] == ["mlp", "cnn"]
    assert axes.get_title() == "t\n4 trials; mean over seed, spread min-max"


def test_no_plot_no_matplotlib() -> None:
    """A sweep that gets no plot (two params vary) does not import matplotlib."""
    code = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from types import SimpleNamespace as N
        from sweepflow.reporting.plots import publish_sweep_plot
        specs = [N(params={"a": a, "b": b}) for a in "12" for b in "34"]
        rows = [N(status="done", metrics={"y": 1.0}) for _ in specs]
        assert publish_sweep_plot(None, "p", "job", specs, rows, Path("/nonexistent")) is None
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("matplotlib", "prefect")))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_failing_plot_is_a_warning(tmp_path: Path) -> None:
    def broken(*args: Any) -> None:
        raise OSError("artifact store is read-only")

    tracker = SimpleNamespace(client=SimpleNamespace(log_artifact=broken))
    specs = [SimpleNamespace(params={"lr": lr}) for lr in ("0.1", "0.2")]
    rows = [SimpleNamespace(status="done", metrics={"loss": 1.0}) for _ in specs]
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("sweepflow.reporting.plots")  # Prefect's config: no propagation
    logger.addHandler(handler)
    try:
        assert publish_sweep_plot(tracker, "parent", "fit", specs, rows, tmp_path) is None
    finally:
        logger.removeHandler(handler)
    (record,) = records
    assert record.levelname == "WARNING"
    expected = "no plot of the sweep of 'fit': OSError: artifact store is read-only"
    assert record.getMessage() == expected


# -- real sweeps ----------------------------------------------------------------------

PROGRAM = """
from pydantic import BaseModel


class Config(BaseModel):
    lr: float
    seed: int = 0


def fit(cfg: Config) -> dict:
    # -log10(lr) + seed: at lr=1e-4, seeds 0..2 give 4, 5, 6
    return {"loss": round(-__import__("math").log10(cfg.lr)) + cfg.seed, "acc": cfg.lr}
"""

JOBS = """
jobs:
  fit:
    call: plotfit:fit
    sets:
      - all: lr=log(1e-4:1e-1:4) seed=0:2
  seeds:
    call: plotfit:fit
    sets:
      - all: lr=0.1 seed=0:2
  bad:
    call: plotfit:fit
    sets:
      - all: lr=-1,-2
"""


@pytest.fixture(scope="module")
def swept(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One sweep of ``fit`` (12 trials: 4 learning rates x 3 seeds); the job file."""
    folder = tmp_path_factory.mktemp("plot project")
    (folder / "plotfit.py").write_text(PROGRAM)
    job_file = folder / "sweepflow.yaml"
    job_file.write_text(textwrap.dedent(JOBS).lstrip())
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for name in ("SWEEPFLOW_HOME", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID"):
            patch.delenv(name, raising=False)
        patch.delitem(sys.modules, "plotfit", raising=False)
        from flows.run_job import run_job

        run_job(job="fit", job_file=str(job_file))
        yield job_file


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from sweepflow.cli.main import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _uri(job_file: Path) -> str:
    return f"sqlite:///{(job_file.parent / '.sweepflow' / 'mlflow.db').resolve().as_posix()}"


def test_plot_command(swept: Path, capsys: pytest.CaptureFixture[str]) -> None:
    default = swept.parent / ".sweepflow" / "plots" / "fit-loss-vs-lr.png"
    default.unlink(missing_ok=True)  # the sweep drew this one; the command draws it again
    code, out, err = cli(capsys, "plot", "fit", "--x", "lr", "--y", "loss", "-f", str(swept))
    assert (code, out, err) == (0, f"{default}\n", "")
    assert _png_size(default) == (700, 460) and 10_000 < default.stat().st_size < 500_000

    out_file = swept.parent / "by seed.png"
    args = ["plot", "fit", "--x", "lr", "--y", "loss", "--by", "seed", "--out", str(out_file)]
    code, out, err = cli(capsys, *args, "--filter", "seed=1", "-f", str(swept))
    assert (code, out.strip()) == (0, str(out_file)) and _png_size(out_file) == (700, 460)

    # What was drawn: the trials as MLflow has them, through the same pure functions.
    import sweepflow

    trials = sweepflow.runs("fit", tracking_uri=_uri(swept))
    data = chart([(r.params, r.metrics) for r in trials], "lr", "loss")
    (line,) = data.series
    assert line.xs == pytest.approx((1e-4, 1e-3, 1e-2, 1e-1)) and line.counts == (3, 3, 3, 3)
    assert line.mean == pytest.approx((5.0, 4.0, 3.0, 2.0))
    assert (line.low, line.high) == ((4.0, 3.0, 2.0, 1.0), (6.0, 5.0, 4.0, 3.0))
    assert (data.xscale, data.yscale, data.repeats) == ("log", "linear", ("seed",))


ERRORS = [
    pytest.param(["--x", "lrr", "--y", "loss"], "did you mean 'lr'? parameters: lr, seed", id="x"),
    pytest.param(["--x", "lr", "--y", "los"], "did you mean 'loss'? metrics: acc, loss", id="y"),
    pytest.param(["--x", "lr", "--y", "loss", "--by", "x"], "parameters: lr, seed", id="by"),
    pytest.param(["--x", "lr", "--y", "loss", "--out", "p.svg"], "ending in .png", id="out"),
    pytest.param(["--x", "lr", "--y", "loss", "--run", "abc"], "no sweep 'abc'", id="run"),
    pytest.param(
        ["--x", "lr", "--y", "loss", "--filter", "seed=9"],
        "no finished trial matches the filters in sweep ",
        id="filter",
    ),
]


@pytest.mark.parametrize(("args", "message"), ERRORS)
def test_plot_errors_are_one_line(
    swept: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = cli(capsys, "plot", "fit", *args, "-f", str(swept))
    assert code == 2 and out == "" and message in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err


def test_the_sweep_attaches_its_plot(swept: Path) -> None:
    """The parent run has plots/fit-loss-vs-lr.png; the flow run a markdown artifact
    with the PNG inline."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=_uri(swept))
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("fit").experiment_id], "tags.`sweepflow.role` = 'parent'"
    )
    files = [f.path for f in client.list_artifacts(parent.info.run_id, "plots")]
    assert files == ["plots/fit-loss-vs-lr.png"]
    local = Path(client.download_artifacts(parent.info.run_id, files[0], str(swept.parent)))
    assert _png_size(local) == (700, 460)

    artifacts = _artifacts(parent.data.tags["prefect.flow_run_id"])
    assert sorted(artifacts) == ["plot-fit", "trials-fit"]
    assert artifacts["plot-fit"].type == "markdown"
    text = artifacts["plot-fit"].data
    assert "# `fit`: loss vs lr" in text and "](data:image/png;base64,iVBORw0KGgo" in text


def test_no_plot_where_no_setting_varies(swept: Path) -> None:
    """Only the seed varies: no plot, on either side, and the sweep succeeds."""
    from flows.run_job import run_job

    summary = run_job(job="seeds", job_file=str(swept))
    assert summary["counts"]["done"] == 3
    assert sorted(_artifacts(_flow_run(swept, summary["parent_run"]))) == ["trials-seeds"]
    assert not (swept.parent / ".sweepflow" / "plots" / "seeds-loss-vs-seed.png").exists()


def test_no_finished_trials(swept: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flows.run_job import run_job
    from sweepflow.errors import IncompleteRun

    with pytest.raises(IncompleteRun):
        run_job(job="bad", job_file=str(swept))  # log10 of a negative lr: both fail
    code, out, err = cli(capsys, "plot", "bad", "--x", "lr", "--y", "loss", "-f", str(swept))
    assert code == 2 and out == "", err
    assert "error: no finished trials in sweep " in err and "of job 'bad': nothing to plot" in err
    assert len(err.strip().splitlines()) == 1


def _flow_run(job_file: Path, parent: str) -> str:
    from mlflow import MlflowClient

    run = MlflowClient(tracking_uri=_uri(job_file)).get_run(parent)
    return str(run.data.tags["prefect.flow_run_id"])


def _artifacts(flow_run_id: str) -> dict[str, Any]:
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])
            )
        )
    return {a.key: a for a in found}
