"""Tests of execution profiles: loading, ``--set``, errors, cluster arguments, job scripts.

Golden files in ``tests/golden/`` pin the SLURM job scripts of the shipped profiles,
rendered with a fixed ``python`` and no state folder so they do not depend on the
machine. The scheduler address and worker name are dask-jobqueue's own placeholders
(``SCHEDULER_PLACEHOLDER``, ``WORKER_NAME_PLACEHOLDER``). After an intended change,
regenerate them with ``SWEEPFLOW_UPDATE_GOLDEN=1 pytest tests/test_profiles.py`` and
review the diff.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from sweepflow.cli.main import main
from sweepflow.errors import ProfileError, SweepflowError
from sweepflow.spec.profiles import (
    SCHEDULER_PLACEHOLDER,
    DaskLocalProfile,
    LocalProfile,
    Profile,
    SlurmProfile,
    available_profiles,
    load_profile,
    shipped_profiles_dir,
)

GOLDEN = Path(__file__).parent / "golden"
FIXED_PYTHON = "python=/opt/venv/bin/python"
SHIPPED = {
    "local": LocalProfile,
    "dask-local": DaskLocalProfile,
    "slurm-cpu": SlurmProfile,
    "slurm-gpu": SlurmProfile,
}


def check_golden(name: str, text: str) -> None:
    """Compare ``text`` with ``tests/golden/NAME``; rewrite it under SWEEPFLOW_UPDATE_GOLDEN=1."""
    path = GOLDEN / name
    if os.environ.get("SWEEPFLOW_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.is_file(), f"no golden file {path}: create it with SWEEPFLOW_UPDATE_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(True), text.splitlines(True), str(path), "rendered"
        )
    )
    assert text == expected, (
        f"differs from the golden file (SWEEPFLOW_UPDATE_GOLDEN=1 to accept):\n{diff}"
    )


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder (with a space in its path) as the working directory."""
    folder = tmp_path / "my project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("COLUMNS", "300")  # rich tables: no wrapping
    return folder


# ---------------------------------------------------------------------------
# finding and loading
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "cls"), SHIPPED.items(), ids=list(SHIPPED))
def test_shipped_profiles_load(project: Path, name: str, cls: type[Profile]) -> None:
    profile = load_profile(name)
    assert type(profile) is cls
    assert profile.name == name
    assert profile.description
    assert Path(profile.source) == shipped_profiles_dir() / f"{name}.yaml"


def test_none_means_local(project: Path) -> None:
    assert load_profile(None).name == "local"


def test_shipped_profiles_set_only_known_keys(project: Path) -> None:
    for name, cls in SHIPPED.items():
        data = yaml.safe_load((shipped_profiles_dir() / f"{name}.yaml").read_text())
        assert set(data) <= set(cls.file_keys()), name


def test_shipped_gpu_profile_suits_jax(project: Path) -> None:
    gpu = load_profile("slurm-gpu")
    assert gpu.gpus >= 1
    assert gpu.worker_env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert gpu.worker_env["JAX_PLATFORMS"] == "cuda"
    assert load_profile("slurm-cpu").worker_env["JAX_PLATFORMS"] == "cpu"


def test_user_folder_wins_and_adds(project: Path) -> None:
    write(project, "profiles/slurm-cpu.yaml", "type: local\ndescription: mine\n")
    write(project, "profiles/big.yaml", "type: dask-local\nworkers: 8\n")
    found = available_profiles(project)
    assert list(found) == sorted(found)
    assert found["slurm-cpu"] == project / "profiles" / "slurm-cpu.yaml"
    assert found["local"] == shipped_profiles_dir() / "local.yaml"
    assert found["big"] == project / "profiles" / "big.yaml"
    mine = load_profile("slurm-cpu", project_dir=project)
    assert (type(mine), mine.description) == (LocalProfile, "mine")
    assert load_profile("big", project_dir=project).cluster_kwargs()["n_workers"] == 8


def test_project_dir_defaults_to_cwd(project: Path) -> None:
    write(project, "profiles/mine.yaml", "type: local\ncores: 3\n")
    assert load_profile("mine").cores == 3


@pytest.mark.parametrize(
    "spec",
    ["cards/gpu.yaml", "./cards/gpu.yaml", "ABSOLUTE"],
    ids=["relative", "dot-relative", "absolute"],
)
def test_load_by_path(
    tmp_path: Path, project: Path, monkeypatch: pytest.MonkeyPatch, spec: str
) -> None:
    path = write(project, "cards/gpu.yaml", "type: slurm\ngpus: 1\n")
    spec = str(path) if spec == "ABSOLUTE" else spec
    # relative paths are read from the project folder first, then the working directory
    monkeypatch.chdir(tmp_path)
    profile = load_profile(spec, project_dir=project)
    assert (profile.name, profile.gpus) == ("gpu", 1)


def test_relative_path_falls_back_to_cwd(project: Path, tmp_path: Path) -> None:
    write(project, "here.yml", "type: local\n")
    assert load_profile("here.yml", project_dir=tmp_path).name == "here"


def test_walltime_with_colons_stays_a_string(project: Path) -> None:
    # YAML 1.1 reads 12:00:00 as the base-60 integer 43200
    write(project, "profiles/long.yaml", "type: slurm\nwalltime: 12:00:00\naccount: 0042\n")
    profile = load_profile("long")
    assert (profile.walltime, profile.account) == ("12:00:00", "0042")


# ---------------------------------------------------------------------------
# --set
# ---------------------------------------------------------------------------

SETS = [
    ("int", "slurm-gpu", ["gpus=2"], "gpus", 2),
    ("dotted-adapt", "slurm-cpu", ["adapt.maximum=16"], "adapt", {"minimum": 0, "maximum": 16}),
    (
        "dotted-env",
        "slurm-cpu",
        ["worker_env.FOO=bar"],
        "worker_env",
        {"JAX_PLATFORMS": "cpu", "FOO": "bar"},
    ),
    (
        "env-bool-as-text",
        "slurm-cpu",
        ["worker_env.X=false"],
        "worker_env",
        {"JAX_PLATFORMS": "cpu", "X": "false"},
    ),
    (
        "empty-removes-env",
        "slurm-gpu",
        ["worker_env.JAX_PLATFORMS="],
        "worker_env",
        {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"},
    ),
    ("empty-resets-default", "slurm-cpu", ["memory="], "memory", "4GiB"),
    ("walltime-colons", "slurm-cpu", ["walltime=12:00:00"], "walltime", "12:00:00"),
    ("walltime-minutes", "slurm-cpu", ["walltime=90"], "walltime", "01:30:00"),
    ("walltime-days", "slurm-cpu", ["walltime=2-00:00:00"], "walltime", "2-00:00:00"),
    ("number-as-text", "slurm-cpu", ["partition=123"], "partition", "123"),
    ("leading-zero-text", "slurm-cpu", ["account=0042"], "account", "0042"),
    (
        "flow-list",
        "slurm-cpu",
        ["prologue=[module load cuda, source venv/bin/activate]"],
        "prologue",
        ("module load cuda", "source venv/bin/activate"),
    ),
    (
        "directive-hash-is-text",
        "slurm-cpu",
        ["job_directives=#SBATCH --exclusive"],
        "job_directives",
        ("--exclusive",),
    ),
    ("bool", "dask-local", ["processes=false", "worker_env="], "processes", False),
    ("later-wins", "local", ["cores=2", "cores=5"], "cores", 5),
    ("change-type", "local", ["type=slurm", "cores=2"], "type", "slurm"),
    ("gpu-type", "slurm-gpu", ["gpu_type=a100"], "gpu_type", "a100"),
]


@pytest.mark.parametrize(
    ("name", "sets", "attr", "expected"), [r[1:] for r in SETS], ids=[r[0] for r in SETS]
)
def test_set_overrides(project: Path, name: str, sets: list[str], attr: str, expected) -> None:
    value = getattr(load_profile(name, sets), attr)
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    assert value == expected


def test_set_does_not_change_the_file(project: Path) -> None:
    load_profile("slurm-cpu", ["adapt.maximum=1", "worker_env.A=b"])
    assert load_profile("slurm-cpu").adapt.maximum == 8
    assert "A" not in load_profile("slurm-cpu").worker_env


# ---------------------------------------------------------------------------
# errors: one line, with where and how to fix
# ---------------------------------------------------------------------------

BAD_FILE = """
type: slurm
partiton: gpu
cores: many
adapt:
  maxium: 3
"""

ERRORS = [
    ("unknown-key", "BAD", [], ["'partiton'", "profiles/bad.yaml:2", "did you mean 'partition'?"]),
    ("bad-type", "BAD", [], ["cores", "profiles/bad.yaml:3", "expected an integer, got 'many'"]),
    ("nested-unknown", "BAD", [], ["'maxium' in adapt", "profiles/bad.yaml:5", "'maximum'"]),
    (
        "unknown-name",
        "slurm-gpux",
        [],
        [
            "No profile 'slurm-gpux'",
            "did you mean 'slurm-gpu'?",
            "profiles: dask-local, local, slurm-cpu, slurm-gpu",
        ],
    ),
    (
        "unknown-far-name",
        "zzz",
        [],
        [
            "No profile 'zzz'",
            "profiles: dask-local, local, slurm-cpu, slurm-gpu",
            "profiles/zzz.yaml",
        ],
    ),
    ("missing-path", "nowhere/p.yaml", [], ["No profile file at", "p.yaml"]),
    (
        "set-no-equals",
        "slurm-gpu",
        ["gpus"],
        ["Bad --set item 'gpus'", "KEY=VALUE", "--set adapt.maximum=4"],
    ),
    ("set-bad-key", "slurm-gpu", ["a..b=1"], ["Bad --set item 'a..b=1'"]),
    (
        "set-bad-value",
        "slurm-gpu",
        ["gpus=two"],
        ["gpus", "from --set 'gpus=two'", "expected an integer, got 'two'"],
    ),
    (
        "set-unknown-key",
        "slurm-gpu",
        ["partiton=x"],
        ["Unknown key 'partiton'", "--set 'partiton=x'", "'partition'"],
    ),
    (
        "set-unknown-nested",
        "slurm-gpu",
        ["adapt.maxium=3"],
        ["'maxium' in adapt", "--set 'adapt.maxium=3'", "'maximum'"],
    ),
    (
        "set-into-scalar",
        "slurm-gpu",
        ["gpus.n=1"],
        ["gpus is 1, not a mapping", "--set gpus=VALUE"],
    ),
    (
        "set-loader-key",
        "local",
        ["name=x"],
        ["Unknown key 'name'", "valid keys: cores, description, float64, retries, type"],
    ),
    (
        "other-type-key",
        "local",
        ["gpus=1"],
        ["'gpus'", "applies to slurm profiles, not to type local", "set type: slurm"],
    ),
    (
        "unknown-type",
        "local",
        ["type=slrum"],
        ["type", "expected one of local, dask-local, slurm", "did you mean 'slurm'?"],
    ),
    ("memory-unit", "slurm-cpu", ["memory=16"], ["memory", "16GB"]),
    ("walltime", "slurm-cpu", ["walltime=soon"], ["walltime", "'02:00:00'", "got 'soon'"]),
    (
        "processes-above-cores",
        "slurm-cpu",
        ["processes=8"],
        ["processes", "from --set 'processes=8'", "raise cores"],
    ),
    (
        "gpus-per-process",
        "slurm-gpu",
        ["processes=2"],
        ["gpus (1) must be a multiple of processes (2)"],
    ),
    ("gpu-type-without-gpus", "slurm-cpu", ["gpu_type=a100"], ["gpu_type", "needs gpus"]),
    (
        "adapt-order",
        "slurm-cpu",
        ["adapt.minimum=9"],
        ["adapt.minimum", "minimum (9) is above maximum (8)"],
    ),
    ("space-in-partition", "slurm-cpu", ["partition=a b"], ["partition", "without spaces"]),
    (
        "env-name",
        "slurm-cpu",
        ["worker_env={1x: a}"],
        ["worker_env", "'1x' is not an environment variable name"],
    ),
    (
        "newline-directive",
        "slurm-cpu",
        ['job_directives=["a\\nb"]'],
        ["job_directives", "one line"],
    ),
    ("dask-processes-count", "dask-local", ["processes=4"], ["processes", "workers: N"]),
    (
        "dask-env-needs-processes",
        "dask-local",
        ["processes=false"],
        ["worker_env", "processes: true"],
    ),
    ("negative", "slurm-cpu", ["retries=-1"], ["retries", "greater than or equal to 0"]),
]


@pytest.mark.parametrize(
    ("name", "sets", "words"), [r[1:] for r in ERRORS], ids=[r[0] for r in ERRORS]
)
def test_errors_are_one_clear_line(
    project: Path, name: str, sets: list[str], words: list[str]
) -> None:
    if name == "BAD":
        write(project, "profiles/bad.yaml", BAD_FILE)
        name = "bad"
    with pytest.raises(ProfileError) as caught:
        load_profile(name, sets)
    message = str(caught.value)
    assert isinstance(caught.value, SweepflowError) and isinstance(caught.value, ValueError)
    assert "\n" not in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_yaml_syntax_error_names_the_line(project: Path) -> None:
    write(project, "profiles/broken.yaml", "type: slurm\ncores: [1\n")
    with pytest.raises(ProfileError, match=r"YAML syntax error at profiles/broken.yaml:3"):
        load_profile("broken")


def test_every_problem_of_a_file_is_reported(project: Path) -> None:
    write(project, "profiles/bad.yaml", BAD_FILE)
    with pytest.raises(ProfileError) as caught:
        load_profile("bad")
    assert str(caught.value).count("profiles/bad.yaml:") == 3


def test_keys_of_another_type_are_reported_together(project: Path) -> None:
    with pytest.raises(ProfileError) as caught:
        load_profile("slurm-cpu", ["type=local"])
    message = str(caught.value)
    assert message.startswith("Keys 'partition', 'account',")
    assert "from --set" not in message and "slurm-cpu.yaml:6" in message


# ---------------------------------------------------------------------------
# what the flow uses: resolved settings, cluster arguments, resources
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED, ids=list(SHIPPED))
def test_resolved_round_trips_through_json(project: Path, name: str) -> None:
    profile = load_profile(name)
    resolved = profile.resolved()
    assert json.loads(json.dumps(resolved)) == resolved
    assert resolved["name"] == name and resolved["type"] == profile.type
    again = type(profile).model_validate(resolved)
    assert again.resolved() == resolved


def test_resolved_fills_in_defaults(project: Path) -> None:
    assert load_profile("local").resolved()["cores"] == (os.cpu_count() or 1)
    assert load_profile("local", ["cores=3"]).resolved()["cores"] == 3
    assert load_profile("slurm-cpu").resolved()["python"] == sys.executable


def test_slurm_cluster_kwargs(project: Path) -> None:
    profile = load_profile(
        "slurm-gpu",
        [
            "partition=gpu",
            "account=proj1",
            "qos=high",
            "constraint=a100",
            "gpus=2",
            "gpu_type=a100",
            "prologue=[module load cuda]",
            "job_directives=[--exclusive]",
            "job_directives_skip=[--mem]",
            "interface=ib0",
            "worker_env.QUOTED=a 'b'",
        ],
    )
    kwargs = profile.cluster_kwargs()
    assert kwargs["queue"] == "gpu" and kwargs["account"] == "proj1"
    assert kwargs["job_extra_directives"] == [
        "--qos=high",
        "--constraint=a100",
        "--gres=gpu:a100:2",
        "--exclusive",
    ]
    assert kwargs["job_script_prologue"] == [
        "module load cuda",
        "export JAX_PLATFORMS=cuda",
        "export XLA_PYTHON_CLIENT_PREALLOCATE=false",
        "export QUOTED='a '\"'\"'b'\"'\"''",
    ]
    assert kwargs["worker_extra_args"] == ["--resources", "gpu=2"]
    assert kwargs["job_directives_skip"] == ["--mem"]
    assert kwargs["interface"] == "ib0" and kwargs["python"] == sys.executable
    assert "log_directory" not in kwargs
    assert profile.adapt_kwargs() == {"minimum_jobs": 0, "maximum_jobs": 4}


def test_log_directory_under_the_state_folder(project: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    kwargs = load_profile("slurm-cpu").cluster_kwargs(state)
    assert kwargs["log_directory"] == str(state.resolve() / "logs" / "slurm")
    script = load_profile("slurm-cpu").job_script(state)
    assert f"#SBATCH -o {state.resolve()}/logs/slurm/sweepflow-cpu-%J.out" in script
    with pytest.raises(ProfileError, match="without spaces"):
        load_profile("slurm-cpu").cluster_kwargs(project / ".sweepflow")


@pytest.mark.parametrize(
    ("sets", "resources", "extra"),
    [
        (["gpus=2"], {"gpu": 2}, ["--resources", "gpu=2"]),
        (["gpus=4", "processes=2"], {"gpu": 2}, ["--resources", "gpu=2"]),
        (["gpus=0"], {}, []),
    ],
    ids=["one-process", "split-over-processes", "no-gpus"],
)
def test_worker_resources(project: Path, sets: list[str], resources: dict, extra: list) -> None:
    profile = load_profile("slurm-gpu", sets)
    assert profile.worker_resources() == resources
    assert profile.cluster_kwargs()["worker_extra_args"] == extra
    assert ("--gres=gpu:" in profile.job_script()) == bool(resources)


def test_local_kinds_have_no_resources_or_script(project: Path) -> None:
    for name in ("local", "dask-local"):
        profile = load_profile(name)
        assert profile.worker_resources() == {}
        with pytest.raises(ProfileError, match="only slurm profiles have a job script"):
            profile.job_script()
    assert load_profile("local").cluster_kwargs() == {}
    assert load_profile("local").adapt_kwargs() is None


def test_dask_local_cluster_kwargs(project: Path) -> None:
    profile = load_profile(
        "dask-local", ["workers=3", "memory=2GiB", "adapt.minimum=1", "adapt.maximum=3"]
    )
    assert profile.cluster_kwargs() == {
        "n_workers": 3,
        "threads_per_worker": 1,
        "processes": True,
        "memory_limit": "2GiB",
        "env": {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"},
    }
    assert profile.adapt_kwargs() == {"minimum": 1, "maximum": 3}


# ---------------------------------------------------------------------------
# job scripts
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["slurm-cpu", "slurm-gpu"])
def test_job_script_golden(project: Path, name: str) -> None:
    check_golden(f"{name}.sh", load_profile(name, [FIXED_PYTHON]).job_script())


def test_job_script_is_what_slurmcluster_renders(project: Path) -> None:
    """The shortcut (SLURMJob, no scheduler) renders what SLURMCluster itself would."""
    from dask_jobqueue import SLURMCluster

    profile = load_profile("slurm-gpu", [FIXED_PYTHON, "qos=high", "gpus=2", "interface=lo"])
    options = {"host": "127.0.0.1", "dashboard_address": None}
    with SLURMCluster(**profile.cluster_kwargs(), scheduler_options=options) as cluster:
        rendered = cluster.job_script().replace(cluster.scheduler.address, SCHEDULER_PLACEHOLDER)
    assert rendered == profile.job_script()


def test_job_script_quotes_what_the_shell_reads(project: Path, tmp_path: Path) -> None:
    tricky = "a b; echo 'no' \"$HOME\" `x`"
    python = tmp_path / "py dir" / "python"
    profile = load_profile(
        "slurm-cpu", [f"python={python}", "worker_env.TRICKY=PLACEHOLDER", "prologue="]
    )
    profile = profile.model_copy(update={"worker_env": {"TRICKY": tricky}})
    script = profile.job_script()
    exports = [line for line in script.splitlines() if line.startswith("export ")]
    shown = subprocess.run(
        ["bash", "-c", "\n".join([*exports, 'printf %s "$TRICKY"'])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shown == tricky
    command = script.splitlines()[-1]
    assert command.startswith(f"'{python}' -m distributed.cli.dask_worker ")


# ---------------------------------------------------------------------------
# task runners (constructed, never started)
# ---------------------------------------------------------------------------


def test_local_task_runner(project: Path) -> None:
    from prefect.task_runners import ThreadPoolTaskRunner

    runner = load_profile("local", ["cores=3"]).task_runner()
    assert type(runner) is ThreadPoolTaskRunner and runner._max_workers == 3
    assert load_profile("local", ["cores=3"]).task_runner(max_parallel=7)._max_workers == 7


def test_dask_local_task_runner(project: Path) -> None:
    from prefect_dask import DaskTaskRunner

    profile = load_profile("dask-local", ["workers=2"])
    runner = profile.task_runner()
    assert type(runner) is DaskTaskRunner
    assert runner.cluster_class == "distributed.LocalCluster"
    assert runner.cluster_kwargs == profile.cluster_kwargs()
    assert runner.adapt_kwargs == {}
    assert runner._cluster is None  # nothing started


def test_slurm_task_runner(project: Path, tmp_path: Path) -> None:
    from prefect_dask import DaskTaskRunner

    profile = load_profile("slurm-gpu")
    runner = profile.task_runner(state_dir=tmp_path / "state")
    assert type(runner) is DaskTaskRunner
    assert runner.cluster_class == "dask_jobqueue.SLURMCluster"
    assert runner.cluster_kwargs == profile.cluster_kwargs(tmp_path / "state")
    assert runner.adapt_kwargs == {"minimum_jobs": 0, "maximum_jobs": 4}


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run ``sweepflow ARGS`` in-process; return (exit code, stdout, stderr)."""

    def invoke(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


def test_cli_show_slurm_prints_profile_and_job_script(project: Path, cli) -> None:
    code, out, err = cli("profile", "show", "slurm-gpu", "--set", "gpus=1", "-s", "cores=4")
    assert (code, err) == (0, "")
    settings, _, script = out.partition("\n# --- SLURM job script")
    shown = yaml.safe_load(settings)
    assert (shown["name"], shown["gpus"], shown["cores"]) == ("slurm-gpu", 1, 4)
    assert "#SBATCH --gres=gpu:1" in script
    assert "#SBATCH --cpus-per-task=4" in script
    assert SCHEDULER_PLACEHOLDER in script


def test_cli_show_local_has_no_job_script(project: Path, cli) -> None:
    code, out, _ = cli("profile", "show", "local")
    assert code == 0 and "SBATCH" not in out
    assert yaml.safe_load(out)["type"] == "local"


def test_cli_show_reads_profiles_next_to_the_job_file(project: Path, cli) -> None:
    other = project / "other"
    write(other, "sweepflow.yaml", "jobs:\n  a:\n    run: echo\n")
    write(other, "profiles/mine.yaml", "type: local\ncores: 2\n")
    code, out, _ = cli("profile", "show", "mine", "--file", str(other / "sweepflow.yaml"))
    assert code == 0 and yaml.safe_load(out)["cores"] == 2


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["profile", "show", "slurm-gpux"], ["No profile 'slurm-gpux'", "did you mean"]),
        (["profile", "show", "slurm-gpu", "--set", "gpus=two"], ["--set 'gpus=two'"]),
        (["profile", "show", "slurm-gpu", "--set", "gpus"], ["Bad --set item"]),
    ],
    ids=["unknown-name", "bad-value", "bad-set"],
)
def test_cli_errors_are_one_line(project: Path, cli, args: list[str], words: list[str]) -> None:
    code, out, err = cli(*args)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert all(word in err for word in words), err


def test_cli_list(project: Path, cli) -> None:
    write(project, "profiles/mine.yaml", "type: dask-local\ndescription: My own cluster\n")
    write(project, "profiles/broken.yaml", "type: local\ncorez: 2\n")
    code, out, err = cli("profile", "list")
    assert (code, err) == (0, "")
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("│")}
    for name, cls in SHIPPED.items():
        assert name in rows
        assert f"{shipped_profiles_dir() / name}.yaml" in rows[name]
        assert cls.model_fields["type"].default in rows[name]
    assert "My own cluster" in rows["mine"] and "profiles/mine.yaml" in rows["mine"]
    assert "invalid" in rows["broken"] and "did you mean 'cores'?" in rows["broken"]
