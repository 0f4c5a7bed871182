"""``@sweepflow.main``: argv parsing into pydantic configs, and where the config is recorded."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, field_validator

from sweepflow.reporting.channel import read_report
from sweepflow.reporting.program import ConfigError, config_keys, main, parse_config


class Model(BaseModel):
    depth: int = 2
    act: str = "relu"


class Config(BaseModel):
    lr: float = 0.1
    layers: list[int] = [8]
    seed: int | None = None
    model: Model = Model()
    extra: dict[str, int] = {}
    tag: str = "base"

    @field_validator("lr")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be positive")
        return value


class Needs(BaseModel):
    data: str


PARSED = [
    pytest.param([], {}, id="defaults"),
    pytest.param(["lr=1e-3"], {"lr": 0.001}, id="float-from-text"),
    pytest.param(["model.depth=5"], {"model": {"depth": 5, "act": "relu"}}, id="nested"),
    pytest.param(["layers=[64, 32]"], {"layers": [64, 32]}, id="yaml-list"),
    pytest.param(["seed=null"], {"seed": None}, id="null"),
    pytest.param(["seed=7", "seed=8"], {"seed": 8}, id="later-wins"),
    pytest.param(["+tag=x y; $(z)"], {"tag": "x y; $(z)"}, id="plus-and-odd-text"),
    pytest.param(["extra.a=1", "extra.b=2"], {"extra": {"a": 1, "b": 2}}, id="free-mapping"),
    pytest.param(["model={depth: 9}"], {"model": {"depth": 9, "act": "relu"}}, id="section"),
    pytest.param(["tag=a=b"], {"tag": "a=b"}, id="equals-in-value"),
]


@pytest.mark.parametrize(("argv", "expected"), PARSED)
def test_parse_config(argv: list[str], expected: dict[str, Any]) -> None:
    config, given = parse_config(Config, argv)
    dump = config.model_dump()
    assert {key: dump[key] for key in expected} == expected
    assert set(given) == {item.partition("=")[0].lstrip("+") for item in argv}


ERRORS = [
    pytest.param(Config, ["lrr=1"], "unknown config key 'lrr' — did you mean 'lr'?", id="typo"),
    pytest.param(
        Config,
        ["model.dept=1"],
        "unknown config key 'model.dept' — did you mean 'model.depth'?",
        id="nested-typo",
    ),
    pytest.param(Config, ["zzz=1"], "unknown config key 'zzz' — valid keys: lr, layers", id="none"),
    pytest.param(
        Config,
        ["lr=abc"],
        "invalid value for lr: 'abc' — Input should be a valid number",
        id="bad-float",
    ),
    pytest.param(
        Config,
        ["lr=-1"],
        "invalid value for lr: '-1' — Value error, must be positive",
        id="validator",
    ),
    pytest.param(
        Config,
        ["lr=x", "model.depth=y"],
        "(also invalid: model.depth)",
        id="several",
    ),
    pytest.param(Config, ["layers=[1,"], "invalid value for layers: '[1,'", id="bad-yaml"),
    pytest.param(
        Config, ["lr.x=1"], "config key 'lr' is a value, not a section", id="not-a-section"
    ),
    pytest.param(Config, ["lr"], "expected key=value, got 'lr'", id="no-equals"),
    pytest.param(Config, ["=1"], "expected key=value, got '=1'", id="no-key"),
    pytest.param(Needs, [], "missing config key 'data' — pass data=...", id="missing"),
]


@pytest.mark.parametrize(("model", "argv", "message"), ERRORS)
def test_parse_errors(model: type[BaseModel], argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(model, argv)
    text = str(caught.value)
    assert message in text and "\n" not in text


def test_config_keys_include_sections() -> None:
    assert config_keys(Config) == [
        "lr",
        "layers",
        "seed",
        "model",
        "model.depth",
        "model.act",
        "extra",
        "tag",
    ]


@pytest.fixture
def sweepflow_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment the flow gives a trial; returns the trial folder."""
    trial = tmp_path / "runs" / "job" / "abc123"
    trial.mkdir(parents=True)
    monkeypatch.setenv("SWEEPFLOW_REPORT", str(trial / "report.jsonl"))
    monkeypatch.setenv("SWEEPFLOW_TRIAL_DIR", str(trial))
    monkeypatch.setenv("SWEEPFLOW_JOB", "job")
    monkeypatch.setenv("SWEEPFLOW_TRIAL", "abc123")
    return trial


def test_under_sweepflow_records_through_the_report(sweepflow_env: Path) -> None:
    seen: dict[str, Any] = {}

    @main(Config)
    def app(cfg: Config, out: Path) -> float:
        seen.update(cfg=cfg, out=out)
        return cfg.lr * 2

    assert app(["lr=1e-3", "model.depth=4", "layers=[1,2]"]) == 0.002
    assert seen["out"] == sweepflow_env and seen["cfg"].model.depth == 4
    report = read_report(sweepflow_env / "report.jsonl")
    # Keys given on the command line keep their text, so they equal the flow's params.
    assert report.params == {
        "lr": "1e-3",
        "layers": "[1,2]",
        "seed": "None",
        "model.depth": "4",
        "model.act": "relu",
        "extra": "{}",
        "tag": "base",
    }
    assert [entry.path for entry in report.artifacts] == [str(sweepflow_env / "config.yaml")]
    saved = yaml.safe_load((sweepflow_env / "config.yaml").read_text())
    assert saved == {
        "lr": 0.001,
        "layers": [1, 2],
        "seed": None,
        "model": {"depth": 4, "act": "relu"},
        "extra": {},
        "tag": "base",
    }


def test_program_takes_argv(sweepflow_env: Path) -> None:
    @main(Config)
    def app(cfg: Config, out: Path) -> None:
        """Train."""

    params = list(inspect.signature(app).parameters)
    assert params == ["argv"] and app.config_class is Config and app.__doc__ == "Train."


def test_help_lists_keys(capsys: pytest.CaptureFixture[str]) -> None:
    @main(Needs)
    def app(cfg: Needs, out: Path) -> None:
        raise AssertionError("not called")

    with pytest.raises(SystemExit) as caught:
        app(["--help"])
    assert caught.value.code == 0
    assert "data  (required)" in capsys.readouterr().out


def test_main_needs_a_model() -> None:
    with pytest.raises(TypeError, match="needs a pydantic model class"):
        main(dict)  # type: ignore[arg-type]


PROGRAM = """\
    import sys
    from pathlib import Path
    from pydantic import BaseModel
    import sweepflow.reporting.program


    class Config(BaseModel):
        lr: float = 0.1


    @sweepflow.reporting.program.main(Config)
    def app(cfg: Config, out: Path) -> None:
        heavy = [m for m in ("mlflow", "pandas", "prefect") if m in sys.modules]
        print(f"lr={cfg.lr} out={out} heavy={heavy}")


    if __name__ == "__main__":
        app()
"""


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "train.py"
    path.write_text(textwrap.dedent(PROGRAM))
    return path


def test_bad_argv_exits_2_with_one_line(program: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(program), "lrr=0.5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == "error: unknown config key 'lrr' — did you mean 'lr'?\n"
    assert result.stdout == ""


def test_under_sweepflow_in_a_fresh_process_imports_no_mlflow(
    program: Path, sweepflow_env: Path
) -> None:
    result = subprocess.run(
        [sys.executable, str(program), "lr=0.5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == f"lr=0.5 out={sweepflow_env} heavy=[]"
    assert read_report(sweepflow_env / "report.jsonl").params == {"lr": "0.5"}


@pytest.fixture
def experiment_name() -> str:
    """The by-hand experiment of this module (used by the ``by_hand`` fixture)."""
    return "programs"


def test_by_hand_run_lands_in_mlflow(by_hand: str) -> None:
    import mlflow
    from mlflow import MlflowClient

    import sweepflow.reporting.channel

    seen: dict[str, Any] = {}

    @main(Config)
    def app(cfg: Config, out: Path) -> str:
        seen["run_id"] = mlflow.active_run().info.run_id
        (out / "model.txt").write_text("weights")
        sweepflow.reporting.channel.log_metrics({"loss": 0.25}, step=3)
        return "done"

    assert app(["model.depth=3", "lr=0.5"]) == "done"
    assert mlflow.active_run() is None
    client = MlflowClient(by_hand)
    run = client.get_run(seen["run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "programs"
    assert run.data.tags["sweepflow.role"] == "manual"
    assert run.data.params["model.depth"] == "3" and run.data.params["lr"] == "0.5"
    assert run.data.metrics == {"loss": 0.25}
    names = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    assert names == {"config.yaml", "model.txt"}


def test_by_hand_failure_marks_the_run_failed(by_hand: str) -> None:
    import mlflow

    seen: dict[str, str] = {}

    @main(Config)
    def app(cfg: Config, out: Path) -> None:
        seen["run_id"] = mlflow.active_run().info.run_id
        raise RuntimeError("diverged")

    with pytest.raises(RuntimeError, match="diverged"):
        app([])
    assert mlflow.MlflowClient(by_hand).get_run(seen["run_id"]).info.status == "FAILED"
