"""Stage C and D of the LLC workflow: raw traces -> LLCResult, the run table, plots, gallery.

``summarize`` is checked against ``sample_llc`` itself: the sampler is run once to get its
raw traces, then ``sample_llc`` runs the same seed, and both must give the same numbers.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sweepflow.workloads.llc import (
    DataConfig,
    LLCError,
    LLCResult,
    QuadraticModel,
    TargetConfig,
    build_target,
    quadratic_llc,
    sample_llc,
    steps,
)
from sweepflow.workloads.llc._sampler_config import HMCConfig, SGLDConfig
from sweepflow.workloads.llc.analysis import (
    CORE_COLUMNS,
    PLOT_NAMES,
    run_plots,
    run_row,
    summarize,
    write_table,
)
from sweepflow.workloads.llc.estimation import sample_raw
from sweepflow.workloads.llc.gallery import write_gallery
from sweepflow.workloads.llc.steps import RawRun

EIGENVALUES = (0.5, 1.0, 4.0)


def _target(precision: str) -> TargetConfig:
    return TargetConfig(
        model=QuadraticModel(eigenvalues=EIGENVALUES, l0=0.25),
        data=DataConfig(n=500),
        precision=precision,
    )


def _raw_run(precision: str, sampler: Any) -> tuple[RawRun, LLCResult]:
    """The ``llc-run`` payload of one run (as a worker writes it) and sample_llc's result."""
    import jax

    with jax.enable_x64(precision == "float64"):
        target = build_target(_target(precision))
        raw = sample_raw(target, sampler)
        expected = sample_llc(target, sampler)
    # The payload exactly as the worker step writes it, with the timings load_run adds.
    timings = {"compile_seconds": raw.traces.compile_seconds}
    timings["sampling_seconds"] = raw.traces.wall_seconds
    run = steps._raw_run(target, raw).model_copy(update=timings)
    return run, expected


SGLD = SGLDConfig(step_size=2e-4, chains=3, draws=400, burn_in=100, eval_every=2, seed=3)
HMC = HMCConfig(chains=2, draws=200, burn_in=100, integration_steps=8, seed=1)


@pytest.fixture(scope="module")
def sgld_run() -> tuple[RawRun, LLCResult]:
    return _raw_run("float32", SGLD)


@pytest.mark.parametrize(
    ("precision", "sampler"),
    [pytest.param("float32", SGLD, id="sgld"), pytest.param("float64", HMC, id="hmc")],
)
def test_summary_of_raw_traces_matches_sample_llc(precision: str, sampler: Any) -> None:
    raw, expected = _raw_run(precision, sampler)
    got = summarize(raw)
    assert got.llc == pytest.approx(expected.llc, rel=1e-12)
    assert got.llc_sd == pytest.approx(expected.llc_sd, rel=1e-12)
    assert got.llc_per_chain == pytest.approx(expected.llc_per_chain, rel=1e-12)
    assert got.diagnostics.ess == pytest.approx(expected.diagnostics.ess, rel=1e-9)
    assert got.diagnostics.rhat == pytest.approx(expected.diagnostics.rhat, rel=1e-9)
    # Equal up to summation order (the worker's arrays are transposed, so numpy sums the
    # same numbers in another order): compare floats with a relative tolerance.
    for mine, theirs in zip(got.chains, expected.chains, strict=True):
        assert mine.model_copy(update={"llc": theirs.llc}) == theirs
        assert mine.llc == pytest.approx(theirs.llc, rel=1e-12)
    assert got.traces.model_copy(update={"running_llc": []}) == expected.traces.model_copy(
        update={"running_llc": []}
    )
    assert np.allclose(got.traces.running_llc, expected.traces.running_llc, rtol=1e-12)
    assert got.diagnostics.tuning == expected.diagnostics.tuning
    for name in ("target_id", "target", "sampler", "n", "num_params", "beta", "nbeta", "gamma"):
        assert getattr(got, name) == getattr(expected, name), name
    assert 0 < got.llc < len(EIGENVALUES) / 2  # a real estimate (accuracy: known-answer tests)


def test_summary_reads_a_mapping_of_the_payload_too(sgld_run) -> None:
    run, expected = sgld_run
    assert summarize(run.model_dump()).llc == pytest.approx(expected.llc, rel=1e-12)


def test_a_diverged_chain_is_left_out_of_estimate_and_diagnostics(sgld_run) -> None:
    raw, _ = sgld_run
    losses = np.asarray(raw.loss)
    losses[1, 50] = np.nan
    result = summarize(raw.model_copy(update={"loss": losses.tolist()}))
    healthy = [result.llc_per_chain[0], result.llc_per_chain[2]]
    assert result.llc == pytest.approx(np.mean(healthy))
    assert result.diagnostics.divergent_chains == ["chain 1: diverged: loss NaN at draw 50"]
    assert result.diagnostics.ess is not None  # computed on the two healthy chains


def test_a_run_without_traces_is_one_clear_error(sgld_run) -> None:
    raw, _ = sgld_run
    broken = {k: v for k, v in raw.model_dump().items() if k != "final_loss"}
    with pytest.raises(LLCError, match="no field 'final_loss' or 'final_losses'"):
        summarize(broken)


def test_row_has_the_table_columns_and_the_true_value(sgld_run) -> None:
    raw, _ = sgld_run
    result = summarize(raw)
    row = run_row("quad", result.target_id, "sgld[step_size=0.0002]", result, "r-1", 1.5)
    assert list(row)[: len(CORE_COLUMNS)] == list(CORE_COLUMNS)
    assert row["llc"] == result.llc and row["wall_s"] == 1.5 and row["run_id"] == "r-1"
    assert row["llc_true"] == pytest.approx(quadratic_llc(EIGENVALUES, result.nbeta, 100.0))
    assert row["llc_error"] == pytest.approx(result.llc - row["llc_true"])
    assert row["step_size"] == 2e-4 and row["batch_size"] == 64
    assert row["chains"] == 3 and row["draws"] == 400
    assert row["total_draws"] == 1200
    assert row["grad_evals"] == sum(c.grad_evals for c in result.chains) > 0
    assert row["integration_steps"] is None  # an HMC setting, absent for SGLD


def test_table_round_trips_with_stable_columns(sgld_run, tmp_path: Path) -> None:
    raw, _ = sgld_run
    result = summarize(raw)
    rows = [
        run_row("quad", result.target_id, name, result, f"r-{i}", 1.0 + i)
        for i, name in enumerate(["a", "b"])
    ]
    rows[1]["experiment"] = "demo"
    path = write_table(rows, tmp_path / "state" / "llc_runs.parquet")
    assert path == tmp_path / "state" / "llc_runs.parquet"
    assert [p.name for p in path.parent.iterdir()] == ["llc_runs.parquet"]  # no temporary left
    frame = pd.read_parquet(path)
    required = ["target", "target_id", "sampler", "llc", "llc_sd", "ess", "rhat", "wall_s"]
    assert {*required, "run_id", "step_size", "grad_evals", "total_draws"} <= set(frame)
    assert list(frame.columns[: len(CORE_COLUMNS)]) == list(CORE_COLUMNS)
    assert frame.columns[-1] == "experiment"
    assert frame["sampler"].tolist() == ["a", "b"] and frame["wall_s"].tolist() == [1.0, 2.0]
    assert frame["llc"].tolist() == pytest.approx([result.llc] * 2)
    # The same rows in another order of keys give the same columns.
    again = write_table([dict(reversed(list(r.items()))) for r in rows], tmp_path / "again.parquet")
    assert list(pd.read_parquet(again).columns) == list(frame.columns)


def test_plots_are_written_with_fixed_names(sgld_run, tmp_path: Path) -> None:
    result = summarize(sgld_run[0])
    written = run_plots(result, tmp_path / "plots" / "r-1")
    assert [p.name for p in written] == list(PLOT_NAMES)
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.headings: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "img":
            self.images.append(found["src"] or "")
        elif tag in {"a", "link", "script"}:
            self.links.append(found.get("href") or found.get("src") or "")
        self._in_h2 = tag == "h2"

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.headings.append(data)
            self._in_h2 = False


def test_gallery_has_a_section_per_target_and_chooses_plots_by_run_record(
    sgld_run, tmp_path: Path
) -> None:
    result = summarize(sgld_run[0])
    plots, rows = {}, []
    for target in ("quad-a", "quad-b"):
        for sampler in ("sgld[step_size=1e-05]", "hmc"):
            run_id = f"{target}/{sampler}"
            plots[run_id] = run_plots(result, tmp_path / "plots" / target / sampler)
            rows.append(run_row(target, f"id-{target}", sampler, result, run_id, 2.0))
    # A newer plot of another run must not be picked: plots follow run ids, not file times.
    decoy = run_plots(result, tmp_path / "plots" / "newest")
    plots["stale-run"] = decoy  # a run no row refers to: not in the gallery
    out = tmp_path / "gallery"
    md, page = write_gallery(rows, plots, out)
    assert (md.name, page.name) == ("gallery.md", "gallery.html")

    text = md.read_text()
    assert re.findall(r"^## (.+)$", text, re.M) == ["quad-a", "quad-b"]
    assert "| | sgld[step_size=1e-05] | hmc |" in text
    assert f"{result.llc:.4g} ± {result.llc_sd:.2g}" in text
    md_images = re.findall(r"!\[(?:\\.|[^\]\\])*\]\(([^)]+)\)", text)
    assert len(md_images) == 4 and len(set(md_images)) == 4
    for image in md_images:
        assert (out / image).is_file() and not Path(image).is_absolute()

    parser = _Links()
    parser.feed(page.read_text())
    assert parser.headings == ["quad-a", "quad-b"]
    assert sorted(parser.images) == sorted(md_images)
    for link in parser.images + parser.links:
        assert not re.match(r"[a-z]+://", link), link  # no external assets
        assert (out / link).is_file(), link
    assert "newest" not in text and "stale-run" not in text
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(
        {Path(image).parent.name for image in md_images}
    )
    assert text.count("| true λ |") == 2 and "<th>R-hat</th>" in page.read_text()


def test_gallery_refuses_a_missing_plot(sgld_run, tmp_path: Path) -> None:
    result = summarize(sgld_run[0])
    row = run_row("quad", "id", "sgld", result, "r-1", 1.0)
    with pytest.raises(LLCError, match="does not exist"):
        write_gallery([row], {"r-1": [tmp_path / "gone.png"]}, tmp_path / "gallery")
