"""``sweepflow.Workflow``: steps in order, wired by input and output names.

A step's input ``dataset`` takes the output ``dataset`` of the latest earlier step that
makes one; :meth:`Workflow.validate` reports every wiring and config problem at once,
each naming the step and the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from pydantic import BaseModel

from sweepflow.workflow.config import check_config
from sweepflow.workflow.errors import WorkflowError
from sweepflow.workflow.steps import Step

__all__ = ["Edge", "Workflow"]


class Edge(NamedTuple):
    """One wire: ``producer.output`` feeds ``consumer.input``, an artifact of ``type``."""

    producer: str
    output: str
    consumer: str
    input: str
    type: str

    def __str__(self) -> str:
        return f"{self.producer}.{self.output} -> {self.consumer}.{self.input} ({self.type})"


class Workflow:
    """A named pipeline of steps, run in the order given.

    Attributes:
        name: The workflow's name (``sweepflow workflow run NAME``).
        steps: The steps, in order.
    """

    def __init__(self, name: str, steps: Sequence[Step]) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise WorkflowError(
                f"workflow name {name!r} is not an identifier: use e.g. 'train_and_evaluate'"
            )
        for index, item in enumerate(steps):
            if not isinstance(item, Step):
                what = getattr(item, "__name__", repr(item))
                raise WorkflowError(
                    f"workflow '{name}': item {index + 1} ({what}) is not a step: "
                    "decorate it with @sweepflow.step(...)"
                )
        if not steps:
            raise WorkflowError(f"workflow '{name}' has no steps: pass a list of steps")
        self.name = name
        self.steps: tuple[Step, ...] = tuple(steps)

    def __repr__(self) -> str:
        return f"<workflow {self.name}: {' -> '.join(s.name for s in self.steps)}>"

    @property
    def names(self) -> list[str]:
        """The step names, in order."""
        return [s.name for s in self.steps]

    def step(self, name: str) -> Step:
        """The step called ``name``; WorkflowError (with a did-you-mean) if none is."""
        for item in self.steps:
            if item.name == name:
                return item
        raise WorkflowError(f"workflow '{self.name}' has no step '{name}'{self._hint(name)}")

    def _hint(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names, n=1, cutoff=0.6)
        return f" — did you mean '{close[0]}'?" if close else f" (steps: {', '.join(self.names)})"

    def _wire(self) -> tuple[list[Edge], list[str]]:
        """The edges and the wiring problems (missing inputs, type mismatches)."""
        edges: list[Edge] = []
        problems: list[str] = []
        for index, consumer in enumerate(self.steps):
            for name, type_ in consumer.inputs.items():
                producer = next(
                    (s for s in reversed(self.steps[:index]) if name in s.outputs), None
                )
                if producer is None:
                    later = next((s for s in self.steps[index + 1 :] if name in s.outputs), None)
                    fix = (
                        f"move step '{later.name}' (which outputs it) before '{consumer.name}'"
                        if later is not None
                        else f"add a step with outputs={{'{name}': '{type_}'}} before it"
                    )
                    problems.append(
                        f"step '{consumer.name}': input '{name}' ({type_}) is not an output of "
                        f"any earlier step: {fix}, or rename the input"
                    )
                    continue
                made = producer.outputs[name]
                if made != type_:
                    problems.append(
                        f"step '{consumer.name}': input '{name}' expects type '{type_}' but step "
                        f"'{producer.name}' outputs '{name}' as type '{made}': declare the same "
                        "type on both"
                    )
                    continue
                edges.append(Edge(producer.name, name, consumer.name, name, type_))
        return edges, problems

    def wiring(self) -> list[Edge]:
        """Every edge (producer step, output, consumer step, input, type), in step order.

        Inputs that cannot be wired are left out; :meth:`validate` reports them.
        """
        return self._wire()[0]

    def problems(self, config: Mapping[str, Any] | None = None) -> list[str]:
        """Every problem of the workflow (and of ``config`` when given), one line each."""
        found: list[str] = []
        seen: set[str] = set()
        for item in self.steps:
            if item.name in seen:
                found.append(
                    f"workflow '{self.name}': two steps are named '{item.name}': rename one "
                    "function (a step's name is its function's name)"
                )
            seen.add(item.name)
        found.extend(self._wire()[1])
        if config is not None:
            found.extend(check_config(self.steps, config, self.name)[1])
        return list(dict.fromkeys(found))  # a repeated step repeats its problems

    def validate(self, config: Mapping[str, Any] | None = None) -> dict[str, BaseModel]:
        """Check the wiring and, when given, the config (one mapping per step name).

        Args:
            config: The workflow config as plain data (``{"train": {"lr": 0.1}}``); a
                step left out takes its model's defaults. None checks the wiring only.

        Returns:
            The validated config of each step that has a config model (empty when
            ``config`` is None).

        Raises:
            WorkflowError: Every problem found, each naming the step and the fix.
        """
        found = self.problems(config)
        if found:
            raise WorkflowError(found)
        return {} if config is None else check_config(self.steps, config, self.name)[0]

    def stages(self, select: str | None) -> list[Step]:
        """The steps a ``--stages`` selection names, in workflow order.

        ``a,b`` names steps; ``a:c`` is the inclusive range from ``a`` to ``c`` by order;
        ``a:`` and ``:c`` are open ranges; items combine (``prepare,evaluate:``). None
        or an empty text selects every step.

        Raises:
            WorkflowError: An unknown step (with a did-you-mean) or a backward range.
        """
        if select is None or not select.strip():
            return list(self.steps)
        names = self.names
        chosen: set[int] = set()
        for item in select.split(","):
            item = item.strip()
            if not item:
                raise WorkflowError(
                    f"--stages {select!r} has an empty item: write e.g. prepare,train or "
                    "prepare:evaluate"
                )
            first, colon, last = (part.strip() for part in item.partition(":"))
            start = self._index(first, select) if first else 0
            end = self._index(last, select) if last else len(names) - 1
            if not colon:
                end = start
            if start > end:
                raise WorkflowError(
                    f"--stages {item!r} runs backward ('{names[start]}' comes after "
                    f"'{names[end]}'): write {names[end]}:{names[start]}"
                )
            chosen.update(range(start, end + 1))
        return [self.steps[i] for i in sorted(chosen)]

    def _index(self, name: str, select: str) -> int:
        if name not in self.names:
            raise WorkflowError(
                f"--stages {select!r}: workflow '{self.name}' has no step '{name}'"
                f"{self._hint(name)}"
            )
        return self.names.index(name)

    def from_store(self, selected: Sequence[Step]) -> list[Edge]:
        """The inputs of ``selected`` steps made by steps not selected.

        Each must resolve from the store (the producer ran before with the same config,
        inputs and code); if one does not, run its producer first.
        """
        chosen = {s.name for s in selected}
        return [e for e in self.wiring() if e.consumer in chosen and e.producer not in chosen]

    def missing_from_store(self, edge: Edge) -> str:
        """The one-line message for an input of ``edge`` that the store does not hold."""
        return (
            f"step '{edge.consumer}' needs '{edge.input}' ({edge.type}) from step "
            f"'{edge.producer}', which is not selected and has no stored result for this "
            f"config and code: run --stages {edge.producer} first (or without --stages)"
        )
