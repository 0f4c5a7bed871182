"""A step's code fingerprint and cache key, read from a small project on disk.

The fingerprint follows the step's imports through the project (so an edit to a
helper re-runs the step), ignores comments and docstrings (so re-wording them re-runs
nothing) and ignores the rest of the world; the key never holds a workflow's name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sweepflow.errors import JobError
from sweepflow.workflow.code import (
    STEP_KEY_FORMAT,
    CodeFingerprint,
    code_fingerprint,
    explain_miss,
    source_digest,
    step_key,
    step_key_inputs,
)
from sweepflow.workflow.errors import WorkflowError

STEPS = '''\
"""Steps of the pipeline."""
import helpers


def train(cfg, workspace):
    """Fit a model."""
    return helpers.fit(cfg)  # delegate
'''
HELPERS = '''\
"""Helpers shared by steps."""
from deep.util import scale


def fit(cfg):
    # one pass
    return scale(cfg) + 1
'''
UTIL = '''\
"""Deep utility."""


class Scaler:
    """Scales things."""

    factor = 2


def scale(x):
    """Double it."""
    return x * Scaler.factor
'''


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "my project"  # a space, as users' folders have
    write(
        root,
        {
            "steps.py": STEPS,
            "helpers.py": HELPERS,
            "deep/util.py": UTIL,
            "unrelated.py": "VALUE = 1\n",
        },
    )
    return root


def fingerprint(project: Path, watch: list[str] | None = None) -> CodeFingerprint:
    return code_fingerprint(project / "steps.py", project, watch or [])


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new))


def test_the_step_module_and_what_it_imports_transitively(project: Path) -> None:
    assert sorted(fingerprint(project).files) == ["deep/util.py", "helpers.py", "steps.py"]


def test_an_edit_two_imports_away_changes_the_fingerprint(project: Path) -> None:
    before = fingerprint(project)
    edit(project / "deep/util.py", "factor = 2", "factor = 3")
    after = fingerprint(project)
    assert after.digest != before.digest
    assert explain_miss(before, after) == ["deep/util.py changed"]


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("steps.py", "# delegate", "# hand over to the helper"),
        ("steps.py", '"""Steps of the pipeline."""', '"""The steps, reworded."""'),
        ("steps.py", '"""Fit a model."""', '"""Fit a model.\n\n    Longer now.\n    """'),
        ("steps.py", '    """Fit a model."""\n', ""),
        ("helpers.py", "    # one pass\n", "\n\n    # one pass, explained\n\n"),
        ("deep/util.py", '"""Scales things."""', "'''Scales things, twice.'''"),
        ("deep/util.py", '"""Double it."""', '"""Double it."""  # with a comment'),
        ("deep/util.py", "x * Scaler.factor", "x*Scaler.factor"),
    ],
    ids=[
        "comment",
        "module-docstring",
        "function-docstring",
        "docstring-removed",
        "comment-and-blank-lines",
        "class-docstring",
        "comment-after-docstring",
        "spacing",
    ],
)
def test_comments_docstrings_and_spacing_change_nothing(
    project: Path, name: str, old: str, new: str
) -> None:
    before = fingerprint(project)
    edit(project / name, old, new)
    assert fingerprint(project) == before


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("return x * Scaler.factor", 'return x * Scaler.factor\n    "not a docstring"'),
        ("factor = 2", "factor = 2.0"),
        ("    return x * Scaler.factor", "    if x:\n        pass\n    return x * Scaler.factor"),
    ],
    ids=["a-string-that-is-not-a-docstring", "a-number", "a-block"],
)
def test_code_edits_are_seen(project: Path, old: str, new: str) -> None:
    before = fingerprint(project)
    edit(project / "deep/util.py", old, new)
    assert fingerprint(project).digest != before.digest


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (b"x = 1\r\n", b"x = 1\n"),
        (b"x = (1 +\n     2)\n", b"x = (1 + 2)\n"),
        (
            b'x = 1\n\x0c\ndef \xc3\xa9(): "d\xc3\xa9j\xc3\xa0"; return 1\n',
            b"x = 1\ndef \xc3\xa9(): return 1\n",
        ),
        (
            b'# -*- coding: latin-1 -*-\ndef f():\n    "\xe9t\xe9"\n    return "\xe9"\n',
            b'# -*- coding: latin-1 -*-\ndef f():\n    return "\xe9"\n',
        ),
        (b'async def f():\n    """A."""\n    await g()\n', b"async def f():\n    await g()\n"),
    ],
    ids=["crlf", "continued-line", "form-feed-and-non-ascii", "latin-1", "async"],
)
def test_sources_that_differ_only_in_layout_and_docs_hash_alike(one: bytes, other: bytes) -> None:
    assert source_digest(one) == source_digest(other)


def test_an_unimported_module_changes_nothing(project: Path) -> None:
    before = fingerprint(project)
    (project / "unrelated.py").write_text("VALUE = 2\n")
    write(project, {"other/new.py": "import helpers\n"})
    assert fingerprint(project) == before


def test_a_same_size_edit_right_after_the_last_is_seen(project: Path) -> None:
    """The in-process cache (by mtime and size) never hides an edit made just now."""
    util = project / "deep/util.py"
    before = fingerprint(project)
    tick = util.stat().st_mtime_ns
    edit(util, "factor = 2", "factor = 5")
    os.utime(util, ns=(tick, tick))  # same size, same clock tick: file times are coarse
    assert fingerprint(project).digest != before.digest


def test_relative_imports_and_package_inits_are_followed(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pipeline/__init__.py": "",
            "pipeline/steps.py": "from . import sibling\nfrom .sub.mod import f\n",
            "pipeline/sibling.py": "from .. import top\n",
            "pipeline/sub/__init__.py": "X = 1\n",
            "pipeline/sub/mod.py": "def f():\n    return 1\n",
            "pipeline/sub/unused.py": "",
            "top.py": "",
        },
    )
    step = tmp_path / "pipeline/steps.py"
    before = code_fingerprint(step, tmp_path)
    assert sorted(before.files) == [
        "pipeline/__init__.py",
        "pipeline/sibling.py",
        "pipeline/steps.py",
        "pipeline/sub/__init__.py",
        "pipeline/sub/mod.py",
        "top.py",
    ]
    edit(tmp_path / "pipeline/sub/__init__.py", "X = 1", "X = 2")
    after = code_fingerprint(step, tmp_path)
    assert explain_miss(before, after) == ["pipeline/sub/__init__.py changed"]


def test_absolute_imports_of_the_package_and_from_package_import_module(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "src/mypkg/__init__.py": "",
            "src/mypkg/steps.py": "import mypkg.models as m\nfrom mypkg.data import load\n",
            "src/mypkg/models.py": "",
            "src/mypkg/data/__init__.py": "",
            "src/mypkg/data/load.py": "",
        },
    )
    found = code_fingerprint(tmp_path / "src/mypkg/steps.py", tmp_path)
    assert sorted(found.files) == [
        "src/mypkg/__init__.py",
        "src/mypkg/data/__init__.py",
        "src/mypkg/data/load.py",
        "src/mypkg/models.py",
        "src/mypkg/steps.py",
    ]


def test_the_standard_library_and_installed_packages_are_not_followed(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "steps.py": (
                "import os.path\nimport numpy as np\nfrom collections import OrderedDict\n"
                "import json, sweepflow.hashing\nimport not_installed_anywhere_xyz\n"
                "try:\n    import torch\nexcept ImportError:\n    torch = None\n"
            )
        },
    )
    assert list(code_fingerprint(tmp_path / "steps.py", tmp_path).files) == ["steps.py"]


def test_a_module_loaded_by_a_literal_name_is_followed(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "steps.py": (
                "import importlib\nm = importlib.import_module('plugins.fast')\n"
                "n = __import__('loose')\nname = 'computed'\nimportlib.import_module(name)\n"
            ),
            "plugins/fast.py": "",
            "loose.py": "",
            "computed.py": "",
        },
    )
    assert sorted(code_fingerprint(tmp_path / "steps.py", tmp_path).files) == [
        "loose.py",
        "plugins/fast.py",
        "steps.py",
    ]


def test_files_outside_the_project_are_not_followed(tmp_path: Path) -> None:
    write(tmp_path, {"outside.py": "", "project/steps.py": "import outside\n"})
    found = code_fingerprint(tmp_path / "project/steps.py", tmp_path / "project")
    assert list(found.files) == ["steps.py"]


def test_an_import_cycle_ends(tmp_path: Path) -> None:
    write(
        tmp_path,
        {"steps.py": "import a\n", "a.py": "import b\n", "b.py": "from a import *\nimport steps\n"},
    )
    assert sorted(code_fingerprint(tmp_path / "steps.py", tmp_path).files) == [
        "a.py",
        "b.py",
        "steps.py",
    ]


def test_a_file_that_does_not_parse_is_hashed_as_it_is(tmp_path: Path) -> None:
    write(tmp_path, {"steps.py": "import helpers\n", "helpers.py": "def broken(:\n"})
    before = code_fingerprint(tmp_path / "steps.py", tmp_path)
    assert before.files["helpers.py"].startswith("raw:")
    (tmp_path / "helpers.py").write_text("def broken(:  # still\n")
    assert code_fingerprint(tmp_path / "steps.py", tmp_path) != before


def test_watch_globs_add_files(project: Path) -> None:
    write(project, {"conf/model.yaml": "depth: 2\n", "conf/notes.txt": "x\n"})
    before = fingerprint(project, watch=["conf/*.yaml", "unrelated.py"])
    assert sorted(before.files) == [
        "conf/model.yaml",
        "deep/util.py",
        "helpers.py",
        "steps.py",
        "unrelated.py",
    ]
    (project / "conf/model.yaml").write_text("depth: 3\n")
    after = fingerprint(project, watch=["conf/*.yaml", "unrelated.py"])
    assert explain_miss(before, after) == ["conf/model.yaml changed"]
    (project / "unrelated.py").write_text("VALUE = 1  # a comment in a watched module\n")
    assert fingerprint(project, watch=["conf/*.yaml", "unrelated.py"]) == after


def test_a_watch_glob_that_leaves_the_project_is_refused(project: Path) -> None:
    with pytest.raises(JobError, match="leaves the project folder"):
        fingerprint(project, watch=["../*.py"])


def test_a_missing_module_says_so(project: Path) -> None:
    with pytest.raises(WorkflowError, match="does not exist"):
        code_fingerprint(project / "nope.py", project)


def test_explain_miss_names_new_and_gone_files(project: Path) -> None:
    before = fingerprint(project)
    edit(project / "helpers.py", "from deep.util import scale", "import extra\nscale = abs")
    write(project, {"extra.py": "E = 1\n"})
    after = fingerprint(project)
    assert explain_miss(before, after) == [
        "deep/util.py is gone",
        "extra.py is new",
        "helpers.py changed",
    ]
    assert explain_miss(before.files, after.files) == explain_miss(before, after)


# ---- the key -------------------------------------------------------------------------


def key(code: CodeFingerprint | str, **changes: object) -> str:
    args: dict[str, object] = {
        "step": "train",
        "config": {"lr": 0.1, "seed": 0, "layers": [64, 64]},
        "inputs": {"dataset": "a" * 64, "tokenizer": "b" * 64},
        "outputs": {"model": "model"},
        "code": code,
    }
    args.update(changes)
    return step_key(**args)  # type: ignore[arg-type]


def test_an_edit_to_a_helper_changes_the_key_and_code_version_replaces_it(
    project: Path,
) -> None:
    before = key(fingerprint(project))
    edit(project / "deep/util.py", "factor = 2", "factor = 3")
    assert key(fingerprint(project)) != before
    assert key("v1") == key("v1")
    assert key("v1") != key("v2")
    assert key("v1") != before


def test_a_code_version_equal_to_a_digest_is_not_the_fingerprint(project: Path) -> None:
    code = fingerprint(project)
    assert key(code.digest) != key(code)


def test_an_empty_code_version_is_refused() -> None:
    with pytest.raises(WorkflowError, match="empty code_version"):
        key("  ")


@pytest.mark.parametrize(
    "change",
    [
        {"step": "evaluate"},
        {"config": {"lr": 0.01, "seed": 0, "layers": [64, 64]}},
        {"config": {"lr": 0.1, "seed": 0, "layers": [64, 64], "extra": None}},
        {"inputs": {"dataset": "c" * 64, "tokenizer": "b" * 64}},
        {"inputs": {"data": "a" * 64, "tokenizer": "b" * 64}},
        {"outputs": {"model": "checkpoint"}},
        {"outputs": {"model": "model", "plot": "figure"}},
    ],
    ids=["name", "config", "config-key", "input-digest", "input-name", "output-type", "outputs"],
)
def test_each_part_of_the_key_counts(change: dict[str, object]) -> None:
    assert key("v1", **change) != key("v1")


def test_the_key_ignores_key_order_and_the_workflow(project: Path) -> None:
    code = fingerprint(project)

    def in_workflow(workflow: str, reverse: bool) -> str:
        """What two workflows sharing ``train`` would each compute (the name is unused)."""
        config = {"lr": 0.1, "seed": 0, "layers": [64, 64]}
        inputs = {"dataset": "a" * 64, "tokenizer": "b" * 64}
        if reverse:
            config = dict(reversed(config.items()))
            inputs = dict(reversed(inputs.items()))
        return step_key("train", config, inputs, {"model": "model"}, code)

    assert in_workflow("train_and_evaluate", False) == in_workflow("sweep_lr", True)
    record = step_key_inputs("train", {}, {}, {}, code)
    assert record["format"] == STEP_KEY_FORMAT
    assert "train_and_evaluate" not in json.dumps(record)


def test_a_pydantic_config_keys_as_its_json(project: Path) -> None:
    from pydantic import BaseModel

    class TrainConfig(BaseModel):
        lr: float = 0.1
        seed: int = 0
        layers: list[int] = [64, 64]

    assert key("v1", config=TrainConfig()) == key("v1")


# ---- stable across processes, machines and releases ----------------------------------


def test_the_fingerprint_is_the_same_in_a_fresh_interpreter(project: Path) -> None:
    """No hash randomisation, absolute path or process state leaks into it."""
    here = fingerprint(project, watch=["*.py"])
    moved = project.parent / "moved"
    project.rename(moved)
    script = (
        "import sys; from pathlib import Path; from sweepflow.workflow.code import "
        "code_fingerprint as f; p = Path(sys.argv[1]); "
        "print(f(p / 'steps.py', p, ['*.py']).model_dump_json())"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(moved)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    )
    assert CodeFingerprint.model_validate_json(done.stdout) == here


def test_digests_are_pinned() -> None:
    """A change to how code or keys are hashed must bump ``CODE_FORMAT`` or
    ``STEP_KEY_FORMAT`` (and these values) on purpose: Snakemake re-ran every rule of
    its users after an unannounced hashing change."""
    source = b'"""Doc."""\nimport os  # c\n\ndef f(x):\n    return f"{x!r:>{3}} {{x}}"\n'
    assert source_digest(source) == PINNED_SOURCE
    assert key("v1") == PINNED_KEY


PINNED_SOURCE = "ee61c0083fde10169dab48497b05ea9225812100cc3a8647ac37e4747d0ddae9"
PINNED_KEY = "d08b97ff35788176156e38d1e52cf9f456d28c35cfd55d0878a0318d9c5bb927"
