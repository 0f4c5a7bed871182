"""Programs of ``@sweepflow.main`` as a user runs them: values read as Hydra reads them,
and a by-hand run recorded in the program's own experiment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from sweepflow.reporting.program import parse_config, unquote

ROOT = Path(__file__).resolve().parents[1]

# (id, value as written after key=, the value the program gets: Hydra's reading)
UNQUOTED = [
    ("single-quotes", "'my run'", "my run"),
    ("double-quotes", '"my run"', "my run"),
    ("escaped-quote", r"'it\'s'", "it's"),
    ("other-quote-inside", '''"it's"''', "it's"),
    ("escaped-double-quotes", r'"say \"hi\""', 'say "hi"'),
    ("backslash-before-closing-quote-halved", r"'x\\'", "x\\"),
    ("backslash-elsewhere-kept", r"'x\y'", r"x\y"),
    ("equals-inside", "'b=c'", "b=c"),
    ("empty-quotes", "''", ""),
    ("plain", "plain", "plain"),
    ("list-of-quoted-kept", "'a','b'", "'a','b'"),
    ("quote-then-text-kept", "'x'y", "'x'y"),
    ("escaped-comma", r"x\,y", "x,y"),
    ("escaped-equals", r"x\=y", "x=y"),
    ("escaped-backslash", r"x\\y", "x\\y"),
    ("lone-backslash-kept", r"a\b", r"a\b"),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [row[1:] for row in UNQUOTED], ids=[row[0] for row in UNQUOTED]
)
def test_unquote_reads_as_hydra(raw: str, expected: str) -> None:
    assert unquote(raw) == expected


class Named(BaseModel):
    name: str = "base"
    seed: int | None = None
    layers: list[str] = []


def test_parse_config_unquotes_but_keeps_the_given_text() -> None:
    config, given = parse_config(Named, ["name='my run'", "seed=null", "layers=['a b']"])
    assert config == Named(name="my run", seed=None, layers=["a b"])
    assert given["name"] == "'my run'", "params keep the text, as the flow recorded it"


def test_quoted_null_is_text() -> None:
    config, _ = parse_config(Named, ["name='null'"])
    assert config.name == "null"


PROGRAM = """\
    import json
    import os
    from pathlib import Path
    from pydantic import BaseModel
    import sweepflow.reporting.program


    class Config(BaseModel):
        name: str = "base"
        width: int = 1


    @sweepflow.reporting.program.main(Config)
    def app(cfg: Config, out: Path) -> None:
        Path(os.environ["SEEN"]).open("a").write(json.dumps(cfg.model_dump()) + "\\n")


    if __name__ == "__main__":
        app()
"""


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """``example.py`` in a fresh folder, the working directory of its runs."""
    path = tmp_path / "example.py"
    path.write_text(textwrap.dedent(PROGRAM))
    return path


def _by_hand(example: Path, *argv: str, **env: str) -> tuple[str, str, list[dict]]:
    """Run ``python example.py ARGV`` by hand; the experiment name, name param, and
    what the program saw."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{example.parent / 'mlflow.db'}"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SWEEPFLOW_", "MLFLOW_"))}
    subprocess.run(
        [sys.executable, str(example), *argv],
        cwd=example.parent,
        env={
            **clean,
            "MLFLOW_TRACKING_URI": uri,
            "PYTHONPATH": str(ROOT / "src"),
            "SEEN": str(example.parent / "seen.jsonl"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    client = MlflowClient(uri)
    experiments = [e for e in client.search_experiments() if e.name != "Default"]
    (run,) = client.search_runs([e.experiment_id for e in experiments])
    name = client.get_experiment(run.info.experiment_id).name
    seen = [json.loads(line) for line in (example.parent / "seen.jsonl").read_text().splitlines()]
    return name, run.data.params["name"], seen


def test_by_hand_run_lands_in_the_programs_experiment(example: Path) -> None:
    experiment, param, seen = _by_hand(example, "width=3", "name='my run'")
    assert experiment == "example"
    assert seen == [{"name": "my run", "width": 3}]
    assert param == "'my run'"


def test_by_hand_experiment_from_sweepflow_experiment(example: Path) -> None:
    experiment, _, _ = _by_hand(example, "width=3", SWEEPFLOW_EXPERIMENT="study")
    assert experiment == "study"


def test_by_hand_mlflow_experiment_name_wins(example: Path) -> None:
    experiment, _, _ = _by_hand(
        example, SWEEPFLOW_EXPERIMENT="study", MLFLOW_EXPERIMENT_NAME="explicit"
    )
    assert experiment == "explicit"


def test_sweepflow_run_passes_values_unquoted(
    project: Path, prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEEN", str(project / "seen.jsonl"))
    from sweepflow.cli.main import main as cli_main

    (project / "example.py").write_text(textwrap.dedent(PROGRAM))
    each = """name='my run',"it's" width=2"""
    job = {"run": f"{sys.executable} example.py", "sets": [{"each": each}]}
    (project / "sweepflow.yaml").write_text(yaml.safe_dump({"jobs": {"train": job}}))
    assert cli_main(["run", "train"]) == 0
    seen = [json.loads(line) for line in (project / "seen.jsonl").read_text().splitlines()]
    assert sorted(entry["name"] for entry in seen) == ["it's", "my run"]
