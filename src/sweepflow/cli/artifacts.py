"""``sweepflow artifacts ...``: list, show, trace, export, verify, collect, pin and
reindex the objects of the project's artifact store (``<state>/store``).

Tables go to stdout through rich; ``--json`` and the lineage formats go to stdout as
they are, for scripts. Bad input gets one line on stderr and exit code 2.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import os
import shutil
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from sweepflow.cli.options import FileOption, WholeHelpGroup, print_table, project_dir
from sweepflow.errors import SweepflowError
from sweepflow.store import Catalog, GcRefused, ObjectStore, UnknownAtom, gc, verify
from sweepflow.store.render import human_size, to_dot, to_mermaid, to_tree

__all__ = ["artifacts_app"]

artifacts_app = typer.Typer(
    cls=WholeHelpGroup,  # whole command descriptions in --help
    help="The artifact store: list, show, trace, export, verify and collect step outputs.",
    no_args_is_help=True,
)

IdArgument = Annotated[
    str, typer.Argument(help="Short id (model:1a2b3c4d5e6f), digest, or a unique prefix.")
]
_EMPTY = (
    "no artifacts yet in {root}: steps of a workflow store their outputs here "
    "(run one with 'sweepflow workflow run NAME')"
)


class ArtifactsError(SweepflowError, ValueError):
    """A bad option or target of ``sweepflow artifacts``."""


def _root(file: Path | None) -> Path:
    from sweepflow.settings import state_dir

    return state_dir(project_dir(file)) / "store"


def _catalog(file: Path | None) -> Catalog:
    return Catalog(_root(file))


def _resolve(store: ObjectStore, ref: str) -> str:
    """The digest ``ref`` names; an unknown one lists some ids that exist."""
    try:
        return store.resolve(ref)
    except UnknownAtom as exc:
        known = [f"{_type_of(store, d)}:{d[:12]}" for d in list(store.digests())[:5]]
        hint = f" (some ids: {', '.join(known)})" if known else ""
        raise UnknownAtom(f"{exc}{hint}") from None


def _type_of(store: ObjectStore, digest: str) -> str:
    try:
        return store.get(digest).meta.type
    except SweepflowError:
        return "?"


def _table(rows: list[list[str]], columns: list[str], title: str | None = None) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    print_table(table)


def _since(text: str) -> str:
    """``--since`` as the UTC ISO time the catalog compares: a date, a time, or ``Nd``
    (N days ago)."""
    now = dt.datetime.now(dt.UTC)
    try:
        if text.endswith("d") and text[:-1].replace(".", "", 1).isdigit():
            return (now - dt.timedelta(days=float(text[:-1]))).isoformat()
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ArtifactsError(
            f"--since {text!r}: give a date (2026-01-31), a time (2026-01-31T12:00) or "
            "days ago (7d)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat()


@artifacts_app.command("ls")
def artifacts_ls(
    type: Annotated[str | None, typer.Option("--type", help="Only this artifact type.")] = None,
    step: Annotated[str | None, typer.Option("--step", help="Only outputs of this step.")] = None,
    workflow: Annotated[
        str | None, typer.Option("--workflow", help="Only outputs of this workflow.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only made since: a date, a time, or 7d.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list, for scripts.")] = False,
    file: FileOption = None,
) -> None:
    """List stored artifacts, oldest first: id, type, step, size, created, workflow."""
    root = _root(file)
    after = _since(since) if since else None
    if not root.is_dir():
        typer.echo("[]" if as_json else _EMPTY.format(root=root))
        return
    with Catalog(root) as catalog:
        rows = catalog.atoms(type=type, step=step, workflow=workflow, since=after)
        for row in rows:
            try:
                row["workflow"] = catalog.store.get(row["digest"]).meta.provenance.workflow
            except SweepflowError:
                row["workflow"] = None
        unindexed = not rows and not catalog.atoms() and next(catalog.store.digests(), None)
    if as_json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif unindexed:
        typer.echo(
            f"the catalog of {root} is empty but objects exist: run 'sweepflow artifacts reindex'"
        )
    elif not rows:
        filtered = any(v is not None for v in (type, step, workflow, since))
        typer.echo("no artifacts match these filters" if filtered else _EMPTY.format(root=root))
    else:
        cells = [
            [
                r["id"],
                r["type"],
                r["step"] or "",
                human_size(r["size"]),
                r["created"][:19],
                r["workflow"] or "",
            ]
            for r in rows
        ]
        _table(cells, ["id", "type", "step", "size", "created", "workflow"])


def _step_module(step: str, files: list[Path]) -> Path | None:
    """The file among ``files`` that defines a top-level function ``step``."""
    for path in files:
        try:
            tree = ast.parse(path.read_bytes())
        except (OSError, SyntaxError, ValueError):
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == step:
                return path
    return None


def _code_report(meta: Any, project: Path) -> list[str]:
    """Why the step's cache entry would miss now, as lines (``[]``: not checkable)."""
    import hashlib

    from sweepflow.workflow.code import code_fingerprint, explain_miss, source_digest

    old: dict[str, str] = dict(meta.provenance.code)
    step = meta.provenance.step
    python = [project / name for name in old if name.endswith(".py")]
    module = _step_module(step, [p for p in python if p.is_file()]) if step else None
    if not old or module is None:
        why = "records no code fingerprint" if not old else f"step {step!r} is not found"
        return [f"code: not checked (the meta {why} in {project})"]
    new = dict(code_fingerprint(module, project).files)
    for name in set(old) - set(new):  # watch globs: the job's, unknown here
        path = project / name
        if path.is_file():
            data = path.read_bytes()
            new[name] = (
                source_digest(data) if name.endswith(".py") else (hashlib.sha256(data).hexdigest())
            )
    changes = explain_miss(old, new)
    if not changes:
        return ["code: unchanged since it was made (a cache entry of its step would hit)"]
    return ["code: its cache entry would miss now:", *(f"  {line}" for line in changes)]


@artifacts_app.command("show")
def artifacts_show(ref: IdArgument, file: FileOption = None) -> None:
    """Print an artifact's meta, and which file of its code changed since it was made."""
    store = ObjectStore(_root(file))
    atom = store.get(_resolve(store, ref))
    typer.echo(f"{atom.short_id}  {atom.meta.kind}, {human_size(atom.meta.size)}  {atom.path}")
    typer.echo(json.dumps(atom.meta.model_dump(mode="json"), indent=2, sort_keys=True))
    for line in _code_report(atom.meta, project_dir(file)):
        typer.echo(line)


class LineageFormat(StrEnum):
    """How ``lineage`` prints the graph."""

    tree = "tree"
    json = "json"
    dot = "dot"
    mermaid = "mermaid"


@artifacts_app.command("lineage")
def artifacts_lineage(
    ref: IdArgument,
    up: Annotated[bool, typer.Option("--up", help="What it was made from (default).")] = False,
    down: Annotated[bool, typer.Option("--down", help="What was made from it.")] = False,
    form: Annotated[
        LineageFormat, typer.Option("--format", help="tree, json, dot (Graphviz) or mermaid.")
    ] = LineageFormat.tree,
    file: FileOption = None,
) -> None:
    """Print what an artifact was made from (--up) or what was made from it (--down)."""
    if up and down:
        raise ArtifactsError("give --up or --down, not both (--up is the default)")
    direction: Literal["up", "down"] = "down" if down else "up"
    digest = _resolve(ObjectStore(_root(file)), ref)
    with _catalog(file) as catalog:
        graph = catalog.lineage(digest, direction)
    if form is LineageFormat.json:
        typer.echo(json.dumps(graph, indent=2))
    elif form is LineageFormat.dot:
        typer.echo(to_dot(graph))
    elif form is LineageFormat.mermaid:
        typer.echo(to_mermaid(graph))
    else:
        typer.echo(to_tree(graph, digest, direction))


@artifacts_app.command("export")
def artifacts_export(
    ref: IdArgument,
    target: Annotated[Path, typer.Argument(help="Folder to copy into (payload, meta.json).")],
    file: FileOption = None,
) -> None:
    """Copy an artifact out of the store: DIR/payload (writable) and DIR/meta.json."""
    store = ObjectStore(_root(file))
    atom = store.get(_resolve(store, ref))
    dest = target / "payload"
    if dest.exists() or (target / "meta.json").exists():
        raise ArtifactsError(
            f"{target} already holds payload or meta.json: export into a new or empty folder"
        )
    target.mkdir(parents=True, exist_ok=True)
    if atom.meta.kind == "folder":
        shutil.copytree(atom.path, dest)
    else:
        shutil.copy2(atom.path, dest)
    shutil.copy2(atom.path.parent / "meta.json", target / "meta.json")
    for item in [dest, target / "meta.json", *(dest.rglob("*") if dest.is_dir() else ())]:
        os.chmod(item, item.stat().st_mode | 0o200 | (0o100 if item.is_dir() else 0))
    typer.echo(f"exported {atom.short_id} to {dest}")


@artifacts_app.command("verify")
def artifacts_verify(
    quarantine: Annotated[
        bool, typer.Option("--quarantine", help="Move corrupt objects to <store>/quarantine.")
    ] = False,
    file: FileOption = None,
) -> int:
    """Re-hash every object; print one line per corrupt one (exit code 1 if any)."""
    store = ObjectStore(_root(file))
    types = {d: _type_of(store, d) for d in store.digests()}
    found = verify(store, quarantine=quarantine)
    for bad in found:
        moved = f"; moved to {bad.path}" if quarantine else ""
        short = f"{types.get(bad.digest, '?')}:{bad.digest[:12]}"
        typer.echo(f"corrupt: {short} ({bad.digest}): {bad.reason}{moved}")
    hint = "" if quarantine or not found else " (rerun with --quarantine to set them aside)"
    typer.echo(f"{len(types)} objects checked, {len(found)} corrupt{hint}", err=bool(found))
    return 1 if found else 0


@artifacts_app.command("gc")
def artifacts_gc(
    ttl_days: Annotated[
        float | None,
        typer.Option("--ttl-days", help="Delete only unreachable objects older than N days."),
    ] = None,
    keep_last: Annotated[
        int | None,
        typer.Option("--keep-last", help="Only the newest K runs of each workflow are roots."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List; delete nothing.")] = False,
    file: FileOption = None,
) -> None:
    """Delete objects no run, pin or live run reaches, older than --ttl-days N."""
    root = _root(file)
    if ttl_days is None:
        raise GcRefused(
            "gc needs --ttl-days N (N >= 0): only objects older than N days are deleted, "
            "e.g. 'sweepflow artifacts gc --ttl-days 30 --dry-run'"
        )
    if not root.is_dir():
        typer.echo(_EMPTY.format(root=root))
        return
    with Catalog(root) as catalog:
        report = gc(catalog, ttl_days, keep_last=keep_last, dry_run=dry_run)
    verb = "would free" if dry_run else "freed"
    if report.rows:
        cells = [
            [r.type, r.step or "", human_size(r.size), f"{r.age_days:.1f}d", r.id]
            for r in report.rows
        ]
        _table(cells, ["type", "step", "size", "age", "id"])
    count = len(report.rows)
    typer.echo(f"{verb} {human_size(report.total_bytes)} in {count} object{'s' * (count != 1)}")


@artifacts_app.command("pin")
def artifacts_pin(ref: IdArgument, file: FileOption = None) -> None:
    """Keep an artifact, and what it was made from, through every gc."""
    digest = _resolve(ObjectStore(_root(file)), ref)
    with _catalog(file) as catalog:
        catalog.pin(digest)
        typer.echo(f"pinned {catalog.store.get(digest).short_id}")


@artifacts_app.command("unpin")
def artifacts_unpin(ref: IdArgument, file: FileOption = None) -> None:
    """Undo pin: gc may delete the artifact again once nothing else reaches it."""
    digest = _resolve(ObjectStore(_root(file)), ref)
    with _catalog(file) as catalog:
        pinned = any(r["id"] == f"pin:{digest}" for r in catalog.roots())
        catalog.unpin(digest)
        state = "unpinned" if pinned else "was not pinned:"
        typer.echo(f"{state} {catalog.store.get(digest).short_id}")


@artifacts_app.command("reindex")
def artifacts_reindex(file: FileOption = None) -> None:
    """Rebuild the catalog from each object's meta.json and the entries/ and roots/ files."""
    with _catalog(file) as catalog:
        counts = catalog.reindex()
    names = {
        "atoms": "atoms",
        "made_from": "made_from edges",
        "cache_entries": "cache entries",
        "roots": "roots",
        "root_atoms": "root atoms",
    }
    typer.echo(
        f"reindexed {catalog.root}: "
        + ", ".join(f"{n} {names.get(t, t)}" for t, n in counts.items())
    )
