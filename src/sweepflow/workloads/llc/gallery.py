"""Stage D of the LLC workflow: a Markdown and an HTML gallery of the runs, per target.

Each target gets a section with its samplers side by side: a plot and the metrics
(λ̂ ± sd, the true λ where known, ESS, R-hat, wall time, work). The plot of a run is
found through its run record (``plots[row["run_id"]]``), never by file time, and copied
next to the pages, so the folder is self-contained and can be moved or published.
"""

from __future__ import annotations

import hashlib
import html
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._errors import LLCError
from .results import _atomic_write

__all__ = ["GALLERY_HTML", "GALLERY_MARKDOWN", "write_gallery"]

GALLERY_MARKDOWN = "gallery.md"
GALLERY_HTML = "gallery.html"
_MAIN_PLOT = "running_llc.png"
_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 110em; }
table { border-collapse: collapse; margin-bottom: 2em; }
th, td { border: 1px solid #ccc; padding: 0.4em 0.6em; vertical-align: top; }
th { background: #f3f3f3; text-align: left; }
td img { max-width: 32em; width: 100%; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def write_gallery(
    rows: Sequence[Mapping[str, Any]],
    plots: Mapping[str, Sequence[Path]],
    out: Path,
    *,
    title: str | None = None,
) -> tuple[Path, Path]:
    """Write ``gallery.md`` and ``gallery.html`` into ``out``, with the plots copied in.

    Args:
        rows: Rows of the run table (:func:`~sweepflow.workloads.llc.analysis.run_row`);
            sections follow the order in which targets first appear, columns the order
            of the rows.
        plots: The plot files of each run, keyed by the row's ``run_id``; a run's main
            picture is its ``running_llc.png`` (else its first plot), the others are
            linked. A run without plots shows "no plot"; plots of runs not in ``rows``
            are not copied.
        out: The gallery folder (created); images go to ``out/images/<run>/``.
        title: The page title (default: ``LLC gallery: <experiment>`` when the rows
            carry an ``experiment`` key).

    Returns:
        The paths of the Markdown and the HTML page.

    Raises:
        LLCError: If a listed plot file does not exist.
    """
    out = Path(out)
    shown = {str(row.get("run_id")) for row in rows}
    images = {
        str(run): _copy_plots(run, files, out) for run, files in plots.items() if str(run) in shown
    }
    heading = title or _title(rows)
    sections = _sections(rows)
    markdown = _markdown(heading, sections, images)
    page = _html(heading, sections, images)
    md_path, html_path = out / GALLERY_MARKDOWN, out / GALLERY_HTML
    _atomic_write(md_path, markdown.encode())
    _atomic_write(html_path, page.encode())
    return md_path, html_path


_Sections = list[tuple[str, str, list[Mapping[str, Any]]]]


def _sections(rows: Sequence[Mapping[str, Any]]) -> _Sections:
    """(target name, target id, its rows) in the order targets first appear."""
    grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        key = (str(row.get("target", "?")), str(row.get("target_id", "")))
        grouped.setdefault(key, []).append(row)
    return [(name, target_id, runs) for (name, target_id), runs in grouped.items()]


def _copy_plots(run_id: Any, files: Sequence[Path], out: Path) -> list[str]:
    """Copy a run's plots to ``out/images/<run>/``; return their paths relative to ``out``."""
    folder = Path("images") / _slug(str(run_id))
    copied = []
    for file in files:
        source = Path(file)
        if not source.is_file():
            raise LLCError(
                f"plot {source} of run {run_id} does not exist: re-run the analysis "
                "(sweepflow llc run) to redraw it before promoting"
            )
        _atomic_write(out / folder / source.name, source.read_bytes())
        copied.append((folder / source.name).as_posix())
    return copied


def _slug(run_id: str) -> str:
    """A safe folder name for a run id (suffixed by a digest when characters were changed).

    >>> _slug("a1b2c3"), _slug("../x y")
    ('a1b2c3', 'x-y-46c740c6')
    """
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", run_id).strip(".-") or "run"
    if slug != run_id:
        slug = f"{slug}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"
    return slug


def _title(rows: Sequence[Mapping[str, Any]]) -> str:
    experiments = list(dict.fromkeys(str(r["experiment"]) for r in rows if r.get("experiment")))
    return f"LLC gallery: {', '.join(experiments)}" if experiments else "LLC gallery"


def _main(images: list[str]) -> tuple[str | None, list[str]]:
    """The picture shown for a run, and the others (linked)."""
    main = next((i for i in images if i.endswith("/" + _MAIN_PLOT)), images[0] if images else None)
    return main, [i for i in images if i != main]


def _metrics(row: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs shown under a run's plot."""
    llc = f"{_number(row.get('llc'), '.4g')} ± {_number(row.get('llc_sd'), '.2g')}"
    metrics = [("λ̂ ± sd", llc)]
    if _finite(row.get("llc_true")):
        metrics.append(("true λ", _number(row.get("llc_true"), ".4g")))
    metrics += [
        ("ESS", _number(row.get("ess"), ".0f")),
        ("R-hat", _number(row.get("rhat"), ".3f")),
        ("wall time", f"{_number(row.get('wall_s'), '.3g')} s"),
        ("grad evals", _number(row.get("grad_evals"), ",.0f")),
        ("draws/s", _number(row.get("draws_per_s"), ",.0f")),
    ]
    if row.get("divergent_chains"):
        metrics.append(("left out", str(row.get("problems") or row["divergent_chains"])))
    metrics.append(("run", f"{row.get('run_id', '')}"))
    return metrics


def _subtitle(target_id: str, runs: list[Mapping[str, Any]]) -> str:
    first = runs[0]
    parts = [f"id {target_id[:12]}"] if target_id else []
    for key, label in (("n", "n"), ("num_params", "d"), ("precision", "precision")):
        if first.get(key) is not None:
            parts.append(f"{label} = {first[key]}")
    return ", ".join(parts)


def _markdown(title: str, sections: _Sections, images: Mapping[str, list[str]]) -> str:
    lines = [f"# {_md(title)}", ""]
    for name, target_id, runs in sections:
        lines += [f"## {_md(name)}", "", _md(_subtitle(target_id, runs)), ""]
        lines.append("| | " + " | ".join(_md(str(r.get("sampler", "?"))) for r in runs) + " |")
        lines.append("|---" * (len(runs) + 1) + "|")
        cells = []
        for row in runs:
            main, others = _main(images.get(str(row.get("run_id")), []))
            alt = re.sub(r"([\[\]])", r"\\\1", _md(str(row.get("sampler"))))
            cell = f"![{alt}]({main})" if main else "no plot"
            links = " ".join(f"[{Path(o).stem}]({o})" for o in others)
            cells.append(f"{cell}<br>{links}" if links else cell)
        lines.append("| plot | " + " | ".join(cells) + " |")
        labels = list(dict.fromkeys(label for row in runs for label, _ in _metrics(row)))
        for label in labels:
            values = [dict(_metrics(row)).get(label, "") for row in runs]
            lines.append(f"| {label} | " + " | ".join(_md(v) for v in values) + " |")
        lines.append("")
    return "\n".join(lines)


def _html(title: str, sections: _Sections, images: Mapping[str, list[str]]) -> str:
    e = html.escape
    body = [f"<h1>{e(title)}</h1>"]
    for name, target_id, runs in sections:
        body.append(f"<h2>{e(name)}</h2>\n<p>{e(_subtitle(target_id, runs))}</p>")
        body.append("<table>\n<tr><th></th>")
        body += [f"<th>{e(str(row.get('sampler', '?')))}</th>" for row in runs]
        body.append("</tr>\n<tr><th>plot</th>")
        for row in runs:
            main, others = _main(images.get(str(row.get("run_id")), []))
            cell = (
                f'<a href="{e(main)}"><img src="{e(main)}" alt="{e(str(row.get("sampler")))}"></a>'
                if main
                else "no plot"
            )
            links = " ".join(f'<a href="{e(o)}">{e(Path(o).stem)}</a>' for o in others)
            body.append(f"<td>{cell}<br>{links}</td>")
        body.append("</tr>")
        labels = list(dict.fromkeys(label for row in runs for label, _ in _metrics(row)))
        for label in labels:
            values = [dict(_metrics(row)).get(label, "") for row in runs]
            body.append(
                f"<tr><th>{e(label)}</th>" + "".join(f"<td>{e(v)}</td>" for v in values) + "</tr>"
            )
        body.append("</table>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{e(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(value)


def _number(value: Any, spec: str) -> str:
    """``value`` formatted, or an em dash where it is missing or not finite."""
    return format(value, spec) if _finite(value) else "—"


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")
