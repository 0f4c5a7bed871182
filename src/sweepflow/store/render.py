"""Lineage as text: an indented tree, Graphviz ``dot`` and Mermaid, from the JSON-able
graph :meth:`Catalog.lineage` returns (``{"nodes": [...], "edges": [...]}``).

Pure functions of that graph; nothing here reads the store.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Literal

__all__ = ["human_size", "node_label", "to_dot", "to_mermaid", "to_tree"]

Graph = Mapping[str, Sequence[Mapping[str, Any]]]


def human_size(size: int | None) -> str:
    """Bytes as people read them (powers of 1024).

    >>> [human_size(n) for n in (None, 0, 999, 1536, 5 * 1024**3)]
    ['?', '0 B', '999 B', '1.5 KiB', '5.0 GiB']
    """
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def node_label(node: Mapping[str, Any]) -> str:
    """A node in one line: short id, then step and size where known.

    >>> node_label({"id": "model:0123456789ab", "step": "train", "size": 2048})
    'model:0123456789ab (train, 2.0 KiB)'
    >>> node_label({"id": "?:0123456789ab", "step": None, "size": None})
    '?:0123456789ab (not in the catalog)'
    """
    if node.get("size") is None:
        return f"{node['id']} (not in the catalog)"
    parts = [p for p in (node.get("step"), human_size(node.get("size"))) if p]
    return f"{node['id']} ({', '.join(parts)})"


def to_tree(graph: Graph, start: str, direction: Literal["up", "down"] = "up") -> str:
    """An indented tree from ``start`` (a full digest): with ``up`` each line below a
    node is what it was made from, with ``down`` what was made from it, each named by
    the input it is (or was used as). A node reached twice is shown once in full.

    >>> graph = {
    ...     "nodes": [
    ...         {"id": "model:bbbb", "digest": "bb", "step": "train", "size": 10},
    ...         {"id": "dataset:aaaa", "digest": "aa", "step": "prep", "size": 5},
    ...     ],
    ...     "edges": [{"parent": "aa", "child": "bb", "input": "data"}],
    ... }
    >>> print(to_tree(graph, "bb"))
    model:bbbb (train, 10 B)
    └── data: dataset:aaaa (prep, 5 B)
    >>> print(to_tree(graph, "aa", "down"))
    dataset:aaaa (prep, 5 B)
    └── data -> model:bbbb (train, 10 B)
    """
    nodes = {n["digest"]: n for n in graph["nodes"]}
    below: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for edge in graph["edges"]:
        near, far = (
            (edge["child"], edge["parent"])
            if direction == "up"
            else (edge["parent"], edge["child"])
        )
        below[near].append((edge["input"], far))

    def label(digest: str) -> str:
        node = nodes.get(digest) or {"id": digest[:12], "size": None}
        return node_label(node)

    lines = [label(start)]
    shown = {start}

    def walk(digest: str, indent: str) -> None:
        items = sorted(below.get(digest, []))
        for place, (name, other) in enumerate(items):
            last = place == len(items) - 1
            link = f"{name}: " if direction == "up" else f"{name} -> "
            again = other in shown and below.get(other)
            lines.append(
                f"{indent}{'└── ' if last else '├── '}{link}{label(other)}"
                + (" (shown above)" if again else "")
            )
            if not again:
                shown.add(other)
                walk(other, indent + ("    " if last else "│   "))

    walk(start, "")
    return "\n".join(lines)


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def to_dot(graph: Graph) -> str:
    """Graphviz ``dot`` text: one node per atom (named by its full digest), one edge
    per input, from what it was made from to what was made, labelled with the input.

    >>> print(to_dot({"nodes": [{"id": "m:bb", "digest": "bb", "step": "t", "size": 1}],
    ...               "edges": []}))
    digraph lineage {
      rankdir=LR;
      node [shape=box];
      "bb" [label="m:bb\\nt, 1 B"];
    }
    """
    lines = ["digraph lineage {", "  rankdir=LR;", "  node [shape=box];"]
    for node in graph["nodes"]:
        detail = ", ".join(
            p for p in (node.get("step"), human_size(node.get("size"))) if p and p != "?"
        )
        text = _dot_text(node["id"]) + (f"\\n{_dot_text(detail)}" if detail else "")
        lines.append(f'  "{node["digest"]}" [label="{text}"];')
    for edge in graph["edges"]:
        lines.append(
            f'  "{edge["parent"]}" -> "{edge["child"]}" [label="{_dot_text(edge["input"])}"];'
        )
    lines.append("}")
    return "\n".join(lines)


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("|", "#124;")


def to_mermaid(graph: Graph) -> str:
    """Mermaid ``graph TD`` text: nodes ``a<digest>`` labelled with the short id and
    step, edges from what it was made from to what was made, labelled with the input.

    >>> print(to_mermaid({
    ...     "nodes": [{"id": "m:bb", "digest": "bb", "step": "t", "size": 1},
    ...               {"id": "d:aa", "digest": "aa", "step": None, "size": 2}],
    ...     "edges": [{"parent": "aa", "child": "bb", "input": "data"}]}))
    graph TD
      abb["m:bb<br/>t"]
      aaa["d:aa"]
      aaa -->|data| abb
    """
    lines = ["graph TD"]
    for node in graph["nodes"]:
        text = _mermaid_text(node["id"])
        if node.get("step"):
            text += f"<br/>{_mermaid_text(node['step'])}"
        lines.append(f'  a{node["digest"]}["{text}"]')
    for edge in graph["edges"]:
        lines.append(f"  a{edge['parent']} -->|{_mermaid_text(edge['input'])}| a{edge['child']}")
    return "\n".join(lines)
