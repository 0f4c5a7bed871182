"""`sweepflow llc estimate`: the shipped examples end to end, and bad input on one line."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sweepflow.cli.main import app, main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "llc"
PNG = b"\x89PNG\r\n\x1a\n"
ESTIMATE = re.compile(r"^LLC = (\S+) ± (\S+) \(sd over (\d+) of (\d+) chains\)$", re.MULTILINE)


@pytest.fixture(autouse=True)
def _llc_is_registered() -> None:
    names = [group.name for group in app.registered_groups]
    assert "llc" in names, (
        "sweepflow.cli.main does not register the llc commands: import llc_app from "
        "sweepflow.workloads.llc.cli and add app.add_typer(llc_app, name='llc')"
    )


def _check_outputs(stdout: str, out: Path, chains: int) -> dict:
    match = ESTIMATE.search(stdout)
    assert match, f"no estimate line in:\n{stdout}"
    result = json.loads((out / "llc.json").read_text(encoding="utf-8"))
    assert float(match.group(1)) == pytest.approx(result["llc"], rel=1e-3)
    assert float(match.group(2)) == pytest.approx(result["llc_sd"], rel=0.05)
    assert int(match.group(4)) == chains == len(result["chains"])
    assert result["llc"] > 0 and result["llc_sd"] > 0
    assert len(result["traces"]["loss"]) == chains
    for name in ("loss_trace.png", "running_llc.png", "llc.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 20_000, name
    return result


def test_estimate_the_shipped_sgld_example(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out dir"  # a space, as users have
    code = main(
        [
            "llc",
            "estimate",
            str(EXAMPLES / "target.yaml"),
            str(EXAMPLES / "sgld.yaml"),
            "-o",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = _check_outputs(captured.out, out, chains=4)
    assert result["sampler"]["kind"] == "sgld"
    assert f"target {result['target_id'][:12]}" in captured.out
    assert "R-hat" in captured.out and "wrote " in captured.out


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["hmc", "nuts", "mclmc"])
def test_estimate_the_shipped_blackjax_examples(
    tmp_path: Path, capsys: pytest.CaptureFixture, sampler: str
) -> None:
    code = main(
        [
            "llc",
            "estimate",
            str(EXAMPLES / "target.yaml"),
            str(EXAMPLES / f"{sampler}.yaml"),
            "--out",
            str(tmp_path),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = _check_outputs(captured.out, tmp_path, chains=4)
    if sampler != "mclmc":
        assert "acceptance" in captured.out
        assert all(0.5 < chain["acceptance"] <= 1 for chain in result["chains"])


def test_console_script_runs_an_estimate(tmp_path: Path) -> None:
    script = shutil.which("sweepflow", path=str(Path(sys.executable).parent))
    assert script is not None, "install the project (`make venv`) to get the console script"
    sampler = tmp_path / "sgld.yaml"
    sampler.write_text(
        "kind: sgld\nchains: 2\ndraws: 500\nburn_in: 100\nstep_size: 5.0e-4\ngamma: 10.0\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [script, "llc", "estimate", str(EXAMPLES / "target.yaml"), str(sampler), "--out", "res"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    _check_outputs(result.stdout, tmp_path / "res", chains=2)


def _run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_bad_key_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sampler = tmp_path / "sampler.yaml"
    sampler.write_text("kind: sgld\nchains: 2\nstep_sise: 0.001\n", encoding="utf-8")
    code, out, err = _run(["llc", "estimate", str(EXAMPLES / "target.yaml"), str(sampler)], capsys)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: Unknown key 'step_sise' in the sampler at ")
    assert "sampler.yaml:3" in lines[0] and "did you mean 'step_size'?" in lines[0]


def test_a_bad_target_value_names_its_key_path(tmp_path: Path, capsys) -> None:
    target = tmp_path / "target.yaml"
    target.write_text("model:\n  kind: mlp\n  widths: [8, -1]\n", encoding="utf-8")
    code, _, err = _run(["llc", "estimate", str(target), str(EXAMPLES / "sgld.yaml")], capsys)
    assert code == 2
    assert err.startswith("error: Invalid value for model.widths[1] in the target at ")
    assert "target.yaml:3" in err and len(err.strip().splitlines()) == 1


def test_blackjax_on_float32_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "target.yaml"
    target.write_text("model: {kind: toy, powers: [1]}\nprecision: float32\n", encoding="utf-8")
    code, _, err = _run(["llc", "estimate", str(target), str(EXAMPLES / "hmc.yaml")], capsys)
    assert code == 2
    assert "error: sampler hmc runs in float64 only" in err
    assert len(err.strip().splitlines()) == 1


def test_every_chain_diverging_fails_after_writing(tmp_path: Path, capsys) -> None:
    target = tmp_path / "target.yaml"
    target.write_text(
        "model: {kind: toy, powers: [3]}\ndata: {n: 100}\ntraining: {steps: 0}\n", encoding="utf-8"
    )
    sampler = tmp_path / "sampler.yaml"
    sampler.write_text("kind: sgld\nchains: 2\ndraws: 50\nstep_size: 100.0\n", encoding="utf-8")
    code, _, err = _run(["llc", "estimate", str(target), str(sampler), "-o", str(tmp_path)], capsys)
    assert code == 2
    assert "warning: chain 0: diverged" in err and "warning: chain 1: " in err
    assert err.strip().splitlines()[-1].startswith("error: every chain of ")
    assert json.loads((tmp_path / "llc.json").read_text())["diagnostics"]["divergent_chains"]
