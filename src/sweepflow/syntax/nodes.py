"""Typed sweep objects: the parse result of a sweep expression.

Every node is a lazy, re-iterable sequence of value strings with a cheap ``len``, so a
grid of a million trials can be counted without expanding it. Grid expansion iterates
the nodes; the Optuna search-space builder reads their fields (a :class:`Range` is an
int or float distribution, a :class:`LogSpace` a log-uniform one, a list of
:class:`Literal` items a categorical one).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import product

__all__ = [
    "SI_EXPONENTS",
    "LinSpace",
    "Literal",
    "LogSpace",
    "Node",
    "Param",
    "Pipe",
    "Product",
    "Range",
    "ValueList",
    "with_exponent",
]

SI_EXPONENTS = {
    "f": "e-15",
    "p": "e-12",
    "n": "e-9",
    "u": "e-6",
    "m": "e-3",
    "k": "e3",
    "M": "e6",
    "G": "e9",
    "T": "e12",
}


def with_exponent(value: str, exponent: str) -> str:
    """Append an exponent suffix to a number written as text.

    Zero stays as written; a value that already has an exponent gets the sum.

    >>> with_exponent("1.5", "e3")
    '1.5e3'
    >>> with_exponent("0", "e-3")
    '0'
    >>> with_exponent("1.2e+03", "e3")
    '1.2e6'
    """
    if not exponent:
        return value
    try:
        if Decimal(value) == 0:
            return value
    except ArithmeticError:
        return value + exponent
    mantissa, sep, own = value.lower().partition("e")
    if not sep:
        return value + exponent
    return f"{value[: len(mantissa)]}e{int(own) + int(exponent[1:])}"


class Node:
    """Base of the typed sweep objects: a re-iterable sequence of value strings."""

    def __iter__(self) -> Iterator[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Literal(Node):
    """One value taken as written (quoted text, a word, a Hydra list or dict)."""

    text: str

    def __iter__(self) -> Iterator[str]:
        yield self.text

    def __len__(self) -> int:
        return 1


def _format_float(value: Decimal, precision: int) -> str:
    """Format like HydraFlow (``'{x:.{p}g}'``), widening ``p`` if that would round."""
    for p in range(precision, 30):
        text = f"{float(value):.{p}g}"
        if Decimal(text) == value:
            return text
    return str(value)  # pragma: no cover - more than 29 significant digits


@dataclass(frozen=True)
class Range(Node):
    """An inclusive arithmetic range ``start:stop[:step][:suffix]``, computed exactly.

    Attributes:
        start, stop, step: Exact decimal bounds; ``step`` never zero, sign matching.
        integer: True when every part was written as an integer (values print as ints).
        precision: Significant digits for float values, as HydraFlow derives them.
        exponent: Suffix appended to every non-zero value (``e3`` for ``k``), or ``""``.
        stepped: Whether the step was written (a search space makes an unstepped float
            range continuous); not part of equality.
    """

    start: Decimal
    stop: Decimal
    step: Decimal
    integer: bool
    precision: int
    exponent: str = ""
    stepped: bool = field(default=False, compare=False, repr=False)

    def __len__(self) -> int:
        return int((self.stop - self.start) // self.step) + 1

    def value(self, index: int) -> str:
        """The value at ``index`` (0-based), as text."""
        exact = self.start + index * self.step
        text = str(int(exact)) if self.integer else _format_float(exact, self.precision)
        return with_exponent(text, self.exponent)

    def __iter__(self) -> Iterator[str]:
        return (self.value(i) for i in range(len(self)))


@dataclass(frozen=True)
class LinSpace(Node):
    """``lin(start:stop:num)``: ``num`` evenly spaced values including both ends.

    In a search space ``lin(start:stop)`` (``num`` 0) is the continuous uniform range.
    """

    start: Decimal
    stop: Decimal
    num: int

    def __len__(self) -> int:
        return self.num

    def __iter__(self) -> Iterator[str]:
        if self.num == 1:
            yield f"{float(self.start):.6g}"
            return
        width = (self.stop - self.start) / (self.num - 1)
        for i in range(self.num):
            yield f"{float(self.start + i * width):.6g}"


@dataclass(frozen=True)
class LogSpace(Node):
    """``log(start:stop:num)``: ``num`` log-spaced values including both ends.

    In a search space ``log(start:stop)`` (``num`` 0) is the continuous log-uniform
    range; it has no values to sweep.
    """

    start: Decimal
    stop: Decimal
    num: int

    def __len__(self) -> int:
        return self.num

    def __iter__(self) -> Iterator[str]:
        low, high = math.log10(self.start), math.log10(self.stop)
        for i in range(self.num):
            if i == 0:
                value = float(self.start)
            elif i == self.num - 1:
                value = float(self.stop)
            else:
                value = 10 ** (low + i * (high - low) / (self.num - 1))
            yield f"{value:.6g}"


@dataclass(frozen=True)
class ValueList(Node):
    """A comma list: the concatenation of its items' values."""

    items: tuple[Node, ...]

    def __len__(self) -> int:
        return sum(len(item) for item in self.items)

    def __iter__(self) -> Iterator[str]:
        for item in self.items:
            yield from item


@dataclass(frozen=True)
class Product(Node):
    """Text pieces joined in every combination, the first piece varying fastest.

    ``(1,5)e-(1:3)`` is ``Product((ValueList(1,5), Literal("e-"), ValueList(1:3)))``.
    """

    pieces: tuple[Node, ...]

    def __len__(self) -> int:
        return math.prod(len(piece) for piece in self.pieces)

    def __iter__(self) -> Iterator[str]:
        for combo in product(*reversed(self.pieces)):
            yield "".join(reversed(combo))


@dataclass(frozen=True)
class Param(Node):
    """One ``key[/suffix]=values`` token.

    Attributes:
        key: The override key as the program sees it (``lr``, ``model.depth``).
        values: The parsed value expression.
        exponent: The key suffix as an exponent (``/m`` gives ``e-3``), or ``""``.
    """

    key: str
    values: Node
    exponent: str = ""

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[str]:
        for value in self.values:
            yield with_exponent(value, self.exponent)

    def joined(self) -> str:
        """All values as one ``key=v1,v2,...`` item (``all`` semantics)."""
        return f"{self.key}=" + ",".join(self)


@dataclass(frozen=True)
class Pipe(Node):
    """``a=1,2|3,4``: independent alternatives, each one ``key=v1,v2`` item."""

    alternatives: tuple[Param, ...]

    def __len__(self) -> int:
        return len(self.alternatives)

    def __iter__(self) -> Iterator[str]:
        return (alt.joined() for alt in self.alternatives)

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys the alternatives set, in order, without repeats."""
        return tuple(dict.fromkeys(alt.key for alt in self.alternatives))
