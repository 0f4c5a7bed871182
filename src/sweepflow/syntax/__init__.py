"""The extended sweep syntax: parse HydraFlow-style sweep text and expand it.

Text is parsed once into typed objects (:class:`Range`, :class:`LogSpace`,
:class:`LinSpace`, :class:`Product`, :class:`ValueList`, :class:`Literal`,
:class:`Param`, :class:`Pipe`) that grid expansion and Optuna search spaces both read.

>>> values("1:10:3")
['1', '4', '7', '10']
>>> values("0:0.3:0.1")
['0', '0.1', '0.2', '0.3']
>>> values("(1,5)e-(1:3)")
['1e-1', '5e-1', '1e-2', '5e-2', '1e-3', '5e-3']
>>> expand("a=1,2 b=x")
[['a=1', 'b=x'], ['a=2', 'b=x']]
>>> expand("a=1,2|3,4")
[['a=1,2'], ['a=3,4']]
>>> collect("lr/m=1,2,5 seed=0:2")
['lr=1e-3,2e-3,5e-3', 'seed=0,1,2']
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

from sweepflow.errors import SweepSyntaxError
from sweepflow.syntax.nodes import (
    LinSpace,
    Literal,
    LogSpace,
    Node,
    Param,
    Pipe,
    Product,
    Range,
    ValueList,
)
from sweepflow.syntax.parser import (
    _Span,
    parse_param,
    parse_token,
    parse_values,
    reject_pipes,
    search_syntax,
    tokens,
)

__all__ = [
    "LinSpace",
    "Literal",
    "LogSpace",
    "Node",
    "Param",
    "Pipe",
    "Product",
    "Range",
    "SweepSyntaxError",
    "ValueList",
    "collect",
    "expand",
    "parse",
    "parse_expression",
    "values",
]


def parse_expression(text: str) -> Node:
    """Parse one value expression (a comma list of items) into a typed object.

    >>> parse_expression("1:3")
    Range(start=Decimal('1'), stop=Decimal('3'), step=Decimal('1'), integer=True, \
precision=1, exponent='')
    """
    return parse_values(_Span(text, text, 0))


def parse(
    args: str | Sequence[str], *, pipes: bool = True, search: bool = False
) -> list[Param | Pipe]:
    """Parse whitespace-separated ``key[/P]=value`` tokens into typed objects.

    Args:
        args: The tokens, as written in ``each``, ``all`` or on the command line; or a
            list of tokens already split (each string is one token, spaces included).
        pipes: Whether ``|`` alternatives are allowed (only in ``each``).
        search: Parse a search space: ``log(a:b)`` and ``lin(a:b)`` (no count) are
            continuous ranges (``num`` 0).

    Raises:
        SweepSyntaxError: With a caret under the offending column of ``args``.
    """
    if search:
        with search_syntax():
            return parse(args, pipes=pipes)
    params: list[Param | Pipe] = []
    for span in tokens(args):
        if not pipes:
            reject_pipes(span)
        params.append(parse_token(span) if pipes else parse_param(span))
    return params


def values(text: str) -> list[str]:
    """Expand one value expression to its value strings.

    >>> values("1:3:k")
    ['1e3', '2e3', '3e3']
    >>> values("log(0.0001:0.1:4)")
    ['0.0001', '0.001', '0.01', '0.1']
    """
    return list(parse_expression(text))


def expand(args: str | Sequence[str]) -> list[list[str]]:
    """Expand tokens with ``each`` semantics: one assignment list per combination.

    The last token varies fastest; a piped token contributes one ``key=v1,v2`` item
    per alternative.

    Args:
        args: One expression (tokens separated by whitespace), or its tokens as a list
            (as HydraFlow accepts: each string is one token, spaces included).

    Raises:
        SweepSyntaxError: With a caret under the offending column of ``args``.

    >>> expand("model=(cnn,mlp)_(s,l)")[:2]
    [['model=cnn_s'], ['model=mlp_s']]
    >>> expand(["a=1,2", "name=my run"])
    [['a=1', 'name=my run'], ['a=2', 'name=my run']]
    """
    choices = [_choices(param) for param in parse(args)]
    return [list(combo) for combo in product(*choices)]


def _choices(param: Param | Pipe) -> list[str]:
    if isinstance(param, Pipe):
        return list(param)
    return [f"{param.key}={value}" for value in param]


def collect(args: str | Sequence[str]) -> list[str]:
    """Collect tokens with ``all`` semantics: one ``key=v1,v2,...`` item per token.

    Args:
        args: One expression (tokens separated by whitespace), or its tokens as a list
            (as HydraFlow accepts: each string is one token, spaces included).

    Raises:
        SweepSyntaxError: With a caret under the offending column of ``args``.

    >>> collect("a=1:3 b=x")
    ['a=1,2,3', 'b=x']
    >>> collect(["a=1:3", "b=x"])
    ['a=1,2,3', 'b=x']
    """
    return [param.joined() for param in parse(args, pipes=False)]  # type: ignore[union-attr]
