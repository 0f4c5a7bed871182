"""The LLC experiments file: targets x samplers, sweeps, --set, ids, one-line errors.

Fast tests only: nothing here builds a target, samples, or starts Prefect.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sweepflow.errors import SweepflowError
from sweepflow.workloads.llc import (
    HMCConfig,
    LLCError,
    QuadraticModel,
    SGLDConfig,
    TargetConfig,
    load_sampler_config,
    load_target_config,
)
from sweepflow.workloads.llc.experiment import Matrix, describe, load_experiment, sampler_id

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "llc"

# sampler_id(SGLDConfig()): the digest of the canonical JSON of the resolved config. If a
# change to the sampler schema moves it on purpose, every stored run id moves with it:
# update this value and say so in the change.
GOLDEN_SGLD_ID = "b1756d8776c8"

# The example of the issue: a target from a file and one inline; a sampler from a file,
# one inline, one swept into three.
EXPERIMENTS = """\
# experiments.yaml
experiment: demo
targets:                      # a target config, or a file
  - file: target.yaml
  - {model: {kind: quadratic, eigenvalues: [0.1, 1.0, 10.0], rotate: false}, data: {n: 1000}}
samplers:                     # a sampler config, or a file; sweep: expands one into several
  - file: sgld.yaml
  - {kind: hmc, chains: 4, draws: 1000, burn_in: 500}
  - {kind: sgld, sweep: "step_size=log(1e-5:1e-3:3)"}
"""

# The same experiment written differently: block style, other key order, comments,
# defaults written out. Nothing that changes a resolved config.
REFORMATTED = """\
samplers:
  - file: sgld.yaml   # from a file
  - burn_in: 500
    draws: 1000
    kind: hmc
    chains: 4
    integration_steps: 16       # the default, written out
  - sweep: step_size=log(1e-5:1e-3:3)
    kind: sgld
targets:
  - file: target.yaml
  - data:
      n: 1000
    model:
      rotate: false
      l0: 0.0
      eigenvalues: [0.1, 1.0, 10.0]
      kind: quadratic
    precision: float32
experiment: demo
"""

QUADRATIC = TargetConfig(
    model=QuadraticModel(eigenvalues=(0.1, 1.0, 10.0), l0=0.0, rotate=False), data={"n": 1000}
)
SAMPLER_NAMES = [
    "sgld",
    "hmc",
    "sgld[step_size=1e-05]",
    "sgld[step_size=0.0001]",
    "sgld[step_size=0.001]",
]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding the example files, as the working directory (short error paths)."""
    for name in ("target.yaml", "sgld.yaml"):
        (tmp_path / name).write_text((EXAMPLES / name).read_text("utf-8"), "utf-8")
    (tmp_path / "experiments.yaml").write_text(EXPERIMENTS, "utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _ids(matrix: Matrix) -> tuple[list[str], list[str]]:
    return [t.id for t in matrix.targets], [s.id for s in matrix.samplers]


def test_the_issue_example_is_a_two_by_five_matrix(folder: Path) -> None:
    matrix = load_experiment(folder / "experiments.yaml")

    assert matrix.experiment == "demo"
    assert [t.name for t in matrix.targets] == ["target", f"quadratic-{QUADRATIC.target_id[:6]}"]
    assert [s.name for s in matrix.samplers] == SAMPLER_NAMES
    file_target = load_target_config(folder / "target.yaml")
    assert [t.config for t in matrix.targets] == [file_target, QUADRATIC]
    assert _ids(matrix)[0] == [file_target.target_id, QUADRATIC.target_id]
    assert matrix.path == (folder / "experiments.yaml").resolve()
    assert matrix.targets[0].file == (folder / "target.yaml").resolve()
    assert matrix.targets[1].file is None

    sgld_file = load_sampler_config(folder / "sgld.yaml")
    assert matrix.samplers[0].config == sgld_file
    assert matrix.samplers[1].config == HMCConfig(chains=4, draws=1000, burn_in=500)
    assert [s.config.step_size for s in matrix.samplers[2:]] == [1e-5, 1e-4, 1e-3]  # type: ignore[union-attr]
    assert matrix.samplers[2].sweep == {"step_size": "1e-05"}
    assert [s.id for s in matrix.samplers] == [sampler_id(s.config) for s in matrix.samplers]
    assert all(re.fullmatch(r"[0-9a-f]{12}", s.id) for s in matrix.samplers)
    assert matrix.samplers[3].id == GOLDEN_SGLD_ID  # the defaults: step_size 1e-4

    # A flow parameter and a Dask payload: it survives JSON and pickle unchanged.
    assert Matrix.model_validate_json(matrix.model_dump_json()) == matrix
    assert pickle.loads(pickle.dumps(matrix)) == matrix

    pairs = matrix.pairs()
    assert len(pairs) == 10
    assert [(t.name, s.name) for t, s in pairs[:5]] == [("target", n) for n in SAMPLER_NAMES]
    assert {t.name for t, _ in pairs[5:]} == {matrix.targets[1].name}


def test_ids_and_names_survive_reformatting(folder: Path) -> None:
    before = load_experiment(folder / "experiments.yaml")
    (folder / "experiments.yaml").write_text(REFORMATTED, "utf-8")
    target = folder / "target.yaml"
    target.write_text("# reordered\n" + "\n".join(reversed(_blocks(target))), "utf-8")

    after = load_experiment(folder / "experiments.yaml")
    assert _ids(after) == _ids(before)
    assert [t.name for t in after.targets] == [t.name for t in before.targets]
    assert [s.name for s in after.samplers] == [s.name for s in before.samplers]


def _blocks(path: Path) -> list[str]:
    """The top-level keys of a YAML file, each with its indented lines, comments dropped."""
    blocks: list[str] = []
    for line in path.read_text("utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line[0].isspace():
            blocks[-1] += "\n" + line
        else:
            blocks.append(line)
    return blocks


def test_a_changed_config_changes_only_its_own_id(folder: Path) -> None:
    before = load_experiment(folder / "experiments.yaml")
    text = EXPERIMENTS.replace("data: {n: 1000}", "data: {n: 1000}, seed: 1")
    (folder / "experiments.yaml").write_text(text, "utf-8")
    after = load_experiment(folder / "experiments.yaml")
    assert after.targets[0].id == before.targets[0].id
    assert after.targets[1].id != before.targets[1].id
    assert _ids(after)[1] == _ids(before)[1]


def test_defaults_repeated_names_and_a_product_sweep(folder: Path) -> None:
    (folder / "other").mkdir()
    (folder / "other" / "target.yaml").write_text("model: {kind: toy, powers: [1, 2]}\n", "utf-8")
    (folder / "e.yaml").write_text(
        "targets:\n  - file: target.yaml\n  - file: other/target.yaml\n"
        "samplers:\n  - {kind: hmc}\n  - {kind: hmc, seed: 1}\n"
        '  - {kind: sgld, sweep: "step_size=1e-5,1e-4 batch_size=32,64"}\n',
        "utf-8",
    )
    matrix = load_experiment("e.yaml")
    assert matrix.experiment == "e"  # no experiment: key -> the file's stem
    assert [t.name for t in matrix.targets] == ["target", "target-2"]
    assert [s.name for s in matrix.samplers] == [
        "hmc",
        "hmc-2",
        "sgld[step_size=1e-5,batch_size=32]",
        "sgld[step_size=1e-5,batch_size=64]",
        "sgld[step_size=1e-4,batch_size=32]",
        "sgld[step_size=1e-4,batch_size=64]",
    ]
    assert matrix.samplers[-1].config == SGLDConfig(step_size=1e-4, batch_size=64)


def test_a_sweep_of_a_file_sampler_overrides_its_values(folder: Path) -> None:
    text = EXPERIMENTS.replace(
        "  - file: sgld.yaml\n", '  - {file: sgld.yaml, sweep: "step_size=1e-6,2e-6"}\n'
    )
    (folder / "experiments.yaml").write_text(text, "utf-8")
    matrix = load_experiment("experiments.yaml")
    base = load_sampler_config(folder / "sgld.yaml")
    assert [s.name for s in matrix.samplers[:2]] == ["sgld[step_size=1e-6]", "sgld[step_size=2e-6]"]
    assert matrix.samplers[1].config == base.model_copy(update={"step_size": 2e-6})


def _draws(m: Matrix) -> list[int]:
    return [s.config.draws for s in m.samplers]


def _n(m: Matrix) -> list[int]:
    return [t.config.data.n for t in m.targets]


def _field(name: str):
    return lambda m: [getattr(s.config, name, None) for s in m.samplers]


@pytest.mark.parametrize(
    ("sets", "read", "expected"),
    [
        pytest.param(["samplers.draws=200"], _draws, [200] * 5, id="every-sampler"),
        pytest.param(["samplers.1.draws=7"], _draws, [4000, 7, 1000, 1000, 1000], id="one-sampler"),
        pytest.param(["targets.data.n=300"], _n, [300, 300], id="every-target"),
        pytest.param(["targets.1.data.n=300"], _n, [500, 300], id="one-target"),
        pytest.param(
            ["samplers.0.step_size=2e-4"],
            _field("step_size"),
            [2e-4, None, 1e-5, 1e-4, 1e-3],
            id="one-sampler-float",
        ),
        pytest.param(
            ["samplers.precondition=rmsprop"],
            _field("precondition"),
            ["rmsprop", None, "rmsprop", "rmsprop", "rmsprop"],
            id="only-samplers-with-the-key",
        ),
        pytest.param(
            ["samplers.0.gamma="], _field("gamma"), [100.0] * 5, id="empty-value-restores-default"
        ),
        pytest.param(
            ["samplers.0.batch_size=null"],
            _field("batch_size"),
            [None, None, 64, 64, 64],
            id="null-is-a-value",
        ),
        pytest.param(
            ["targets.model.widths=[4, 4]"],
            lambda m: [getattr(t.config.model, "widths", None) for t in m.targets],
            [(4, 4), None],
            id="flow-list",
        ),
        pytest.param(
            ["samplers.2.sweep=draws=10,20"],
            lambda m: [s.name for s in m.samplers],
            ["sgld", "hmc", "sgld[draws=10]", "sgld[draws=20]"],
            id="replace-a-sweep",
        ),
        pytest.param(["experiment=other"], lambda m: m.experiment, "other", id="experiment"),
    ],
)
def test_set_items(folder: Path, sets: list[str], read, expected: object) -> None:
    matrix = load_experiment("experiments.yaml", sets)
    assert read(matrix) == expected
    assert matrix.sets == tuple(sets)


def test_set_changes_the_ids_of_what_it_changes(folder: Path) -> None:
    plain = load_experiment("experiments.yaml")
    changed = load_experiment("experiments.yaml", ["targets.1.data.n=300", "samplers.1.draws=7"])
    assert changed.targets[0].id == plain.targets[0].id
    assert changed.targets[1].id != plain.targets[1].id
    assert changed.targets[1].name != plain.targets[1].name  # inline: named by its id
    assert [s.id == t.id for s, t in zip(changed.samplers, plain.samplers, strict=True)] == [
        True,
        False,
        True,
        True,
        True,
    ]


_TOY = "{model: {kind: toy, powers: [1, 2]}}"
_SGLD = "{kind: sgld}"


def _file(targets: str = f"  - {_TOY}\n", samplers: str = f"  - {_SGLD}\n") -> str:
    return f"experiment: x\ntargets:\n{targets}samplers:\n{samplers}"


@pytest.mark.parametrize(
    ("text", "sets", "message"),
    [
        pytest.param(
            _file("  - file: nope.yaml\n"),
            [],
            r"^No target file 'nope.yaml' for targets\[0\]\.file at e\.yaml:3 .*relative to the "
            r"experiments file$",
            id="missing-file",
        ),
        pytest.param(
            _file(samplers="  - file: sgld.yml\n"),
            [],
            r"^No sampler file 'sgld.yml' for samplers\[0\]\.file at e\.yaml:5 ",
            id="missing-sampler-file",
        ),
        pytest.param(
            _file("  - {model: {kind: toy, powers: [1]}, dta: {n: 10}}\n"),
            [],
            r"^Unknown key 'dta' in the target targets\[0\] at e\.yaml:3 — did you mean 'data'\?$",
            id="unknown-target-key",
        ),
        pytest.param(
            _file(samplers="  - kind: sgld\n    step_sise: 0.1\n"),
            [],
            r"^Unknown key 'step_sise' in the sampler samplers\[0\] at e\.yaml:6 — did you mean "
            r"'step_size'\?$",
            id="unknown-sampler-key",
        ),
        pytest.param(
            _file("  - model: {kind: toy, powers: [1]}\n    data:\n      n: 1\n"),
            [],
            r"^Invalid value for data\.n in the target targets\[0\] at e\.yaml:5: Input should be "
            r"greater than or equal to 2, got 1$",
            id="invalid-value",
        ),
        pytest.param(
            _file(samplers="  - {kind: hmcc}\n"),
            [],
            r"^Invalid value for kind in the sampler samplers\[0\] at e\.yaml:5: expected one of "
            r"sgld, hmc, nuts, mclmc, got 'hmcc' — did you mean 'hmc'\?$",
            id="unknown-kind",
        ),
        pytest.param(
            _file(samplers='  - kind: sgld\n    sweep: "step_size=log(1e-5:)"\n'),
            [],
            r"^Bad sweep in samplers\[0\]\.sweep at e\.yaml:6: log\(\) needs three parts.* at "
            r"column 20\)$",
            id="bad-sweep-column",
        ),
        pytest.param(
            _file(samplers='  - kind: sgld\n    sweep: "step_sise=1e-5,1e-4"\n'),
            [],
            r"^Unknown key 'step_sise' in samplers\[0\]\.sweep at e\.yaml:6 \(column 1\): sgld "
            r"samplers have no such setting — did you mean 'step_size'\?$",
            id="sweep-unknown-key",
        ),
        pytest.param(
            _file(samplers='  - kind: sgld\n    sweep: "step_size=-1,1"\n'),
            [],
            r"^Invalid value for step_size in the sampler samplers\[0\] at e\.yaml:6 \(sweep value "
            r"step_size=-1\): Input should be greater than 0, got -1$",
            id="sweep-invalid-value",
        ),
        pytest.param(
            _file(samplers='  - file: sgld.yaml\n    sweep: "step_size=1e-4,-1"\n'),
            [],
            r"^Invalid value for step_size in the sampler samplers\[0\] at e\.yaml:6 \(sweep value "
            r"step_size=-1\): Input should be greater than 0, got -1$",
            id="sweep-of-a-file-invalid-value",
        ),
        pytest.param(
            _file(samplers='  - {file: sgld.yaml, sweep: "step_size=1e-4 x"}\n'),
            [],
            r"^Bad sweep in samplers\[0\]\.sweep at e\.yaml:5: .*column \d+\)$",
            id="sweep-of-a-file-bad",
        ),
        pytest.param(
            _file(samplers='  - {kind: sgld, step_size: 0.1, sweep: "step_size=1,2"}\n'),
            [],
            r"^samplers\[0\] at e\.yaml:5 sets 'step_size' and also sweeps it .*remove one",
            id="sweep-and-set",
        ),
        pytest.param(
            "experiment: x\ntargets: []\nsamplers:\n  - {kind: sgld}\n",
            [],
            r"^'targets' is \[\], not a non-empty list at e\.yaml:2: list at least one, e\.g\. "
            r"targets: \[\{file: target\.yaml\}\]$",
            id="empty-targets",
        ),
        pytest.param(
            f"experiment: x\ntargets:\n  - {_TOY}\n",
            [],
            r"^'samplers' is missing at e\.yaml:1: list at least one",
            id="no-samplers",
        ),
        pytest.param(
            _file("  - target.yaml\n"),
            [],
            r"^targets\[0\] at e\.yaml:3 must be a target config or \{file: PATH\}, got str "
            r"'target\.yaml'; to read a file write: - file: target\.yaml$",
            id="entry-not-a-mapping",
        ),
        pytest.param(
            _file("  - {file: target.yaml, seed: 2}\n"),
            [],
            r"^Unknown key 'seed' next to file: in targets\[0\] at e\.yaml:3: .*use --set$",
            id="keys-next-to-file",
        ),
        pytest.param(
            "experimnt: x\n" + _file()[len("experiment: x\n") :],
            [],
            r"^Unknown key 'experimnt' at e\.yaml:1 in the experiments file — did you mean "
            r"'experiment'\?$",
            id="unknown-top-key",
        ),
        pytest.param(
            "experiment: ''\n" + _file()[len("experiment: x\n") :],
            [],
            r"^Invalid value for experiment at e\.yaml:1: expected a non-empty name",
            id="empty-experiment",
        ),
        pytest.param(
            _file(f"  - {_TOY}\n  - {{model: {{kind: toy, powers: [1, 2]}}, seed: 0}}\n"),
            [],
            r"^targets\[1\] resolves to the same configuration as targets\[0\] \(id [0-9a-f]{12}\)"
            r": remove one from targets$",
            id="same-target-twice",
        ),
        pytest.param(
            _file("  - {model: {kind: toy, powers: [1, 2]}\n"),
            [],
            r"^YAML syntax error at e\.yaml:4:1: ",
            id="yaml-syntax",
        ),
        pytest.param(
            _file(), ["foo.x=1"], r"^Unknown --set path 'foo\.x' in 'foo\.x=1': ", id="set-root"
        ),
        pytest.param(
            _file(),
            ["samplers.step_sise=1"],
            r"^Unknown key 'step_sise' in --set 'samplers\.step_sise=1': no entry of samplers has "
            r"it — did you mean 'step_size'\? \(valid keys: batch_size, .*\)$",
            id="set-unknown-key",
        ),
        pytest.param(
            _file(),
            ["targets.data.nn=1"],
            r"^Unknown key 'data\.nn' in --set 'targets\.data\.nn=1': .*did you mean 'n'\? "
            r"\(valid keys: input_dim, n, noise, seed, teacher\)$",
            id="set-unknown-nested-key",
        ),
        pytest.param(
            _file(),
            ["targets.3.seed=1"],
            r"^--set 'targets\.3\.seed=1': there are 1 targets in e\.yaml \(indexes 0 to 0\)$",
            id="set-index-out-of-range",
        ),
        pytest.param(
            _file(),
            ["samplers.draws"],
            r"^Bad --set item 'samplers\.draws': write KEY=VALUE",
            id="set-no-value",
        ),
        pytest.param(
            _file(),
            ["targets.data.n=1"],
            r"^Invalid value for data\.n in the target targets\[0\] at e\.yaml:3 \(--set "
            r"'targets\.data\.n=1'\): Input should be greater than or equal to 2, got 1$",
            id="set-invalid-value",
        ),
        pytest.param(
            _file(samplers='  - {kind: sgld, sweep: "step_size=1e-5,1e-4"}\n'),
            ["samplers.step_size=1e-3"],
            r"^--set 'samplers\.step_size=1e-3' would override the sweep of samplers\[0\] at "
            r"e\.yaml:5: ",
            id="set-over-a-sweep",
        ),
    ],
)
def test_errors_are_one_line_with_a_place(
    folder: Path, text: str, sets: list[str], message: str
) -> None:
    (folder / "e.yaml").write_text(text, "utf-8")
    with pytest.raises(LLCError) as caught:
        load_experiment("e.yaml", sets)
    line = str(caught.value)
    assert isinstance(caught.value, SweepflowError) and "\n" not in line
    assert re.search(message, line), line


def test_errors_in_a_target_file_name_that_file(folder: Path) -> None:
    (folder / "target.yaml").write_text("model: {kind: toy, powers: [1]}\nsede: 1\n", "utf-8")
    with pytest.raises(
        LLCError,
        match=r"^Unknown key 'sede' in the target targets\[0\] at "
        r"target\.yaml:2 — did you mean 'seed'\?$",
    ):
        load_experiment("experiments.yaml")


def test_describe_lists_targets_samplers_and_pairs(folder: Path) -> None:
    matrix = load_experiment("experiments.yaml")
    lines = describe(matrix)
    text = "\n".join(lines)
    assert lines[0] == "experiment demo (experiments.yaml)"
    target, quadratic = matrix.targets
    assert re.search(rf"^  target +{target.id[:12]}  mlp, n=500, d=33, float64$", text, re.M)
    assert re.search(
        rf"^  {quadratic.name} +{quadratic.id[:12]}  quadratic, n=1000, d=3, float32$", text, re.M
    )
    for sampler in matrix.samplers:
        assert re.search(rf"^  {re.escape(sampler.name)} +{sampler.id}  ", text, re.M), sampler
    assert re.search(
        r"sgld\[step_size=0\.0001\] +\w+  sgld: 4 chains x 1000 draws, step_size=0\.0001$",
        text,
        re.M,
    )
    assert lines[-1] == "pairs: 2 targets x 5 samplers = 10"


def test_loading_an_experiment_imports_no_framework(folder: Path) -> None:
    # A dry run must stay cheap: no JAX (nor Prefect, MLflow, Optuna, Dask) is loaded.
    script = (
        "import json, sys\n"
        "from sweepflow.workloads.llc.experiment import describe, load_experiment\n"
        "describe(load_experiment('experiments.yaml', ['samplers.draws=10']))\n"
        "heavy = ('jax', 'prefect', 'mlflow', 'optuna', 'dask', 'matplotlib', 'arviz')\n"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=folder, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
