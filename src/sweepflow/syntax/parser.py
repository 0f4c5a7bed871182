"""Parse sweep text into the typed objects of :mod:`sweepflow.syntax.nodes`.

Every function takes a :class:`_Span` (the text, plus where it sits in the text the user
wrote) so that an error can put its caret under the right column of the whole string.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sweepflow.errors import SweepSyntaxError
from sweepflow.syntax.nodes import (
    SI_EXPONENTS,
    LinSpace,
    Literal,
    LogSpace,
    Node,
    Param,
    Pipe,
    Product,
    Range,
    ValueList,
    with_exponent,
)

__all__ = [
    "parse_param",
    "parse_token",
    "parse_values",
    "reject_pipes",
    "search_syntax",
    "tokens",
]

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_SI_NUMBER = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))([fpnumkMGT])")
_EXPONENT = re.compile(r"[eE][+-]?\d+")
_FUNCTION = re.compile(r"(log|lin)\(")
_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {")": "(", "]": "[", "}": "{"}
_RANGE_FORM = "start:stop[:step][:suffix]"
# Inside a search space (optimize: space) log(a:b) and lin(a:b) are continuous ranges.
_SEARCH: contextvars.ContextVar[bool] = contextvars.ContextVar("sweep_search", default=False)


@contextlib.contextmanager
def search_syntax() -> Iterator[None]:
    """Parse search spaces: allow ``log(a:b)`` and ``lin(a:b)`` without a count."""
    token = _SEARCH.set(True)
    try:
        yield
    finally:
        _SEARCH.reset(token)


@dataclass(frozen=True)
class _Span:
    """A piece of the user's text: ``text == whole[offset:offset + len(text)]``."""

    text: str
    whole: str
    offset: int

    def sub(self, start: int, end: int | None = None) -> _Span:
        end = len(self.text) if end is None else end
        return _Span(self.text[start:end], self.whole, self.offset + start)

    def error(self, reason: str, at: int = 0) -> SweepSyntaxError:
        return SweepSyntaxError(reason, self.whole, self.offset + at)


def _split(span: _Span, seps: str) -> list[_Span]:
    """Split at top-level separators; quotes and brackets protect what they enclose."""
    parts: list[_Span] = []
    stack: list[tuple[str, int]] = []
    quote: tuple[str, int] | None = None
    start = 0
    for i, char in enumerate(span.text):
        if quote:
            if char == quote[0]:
                quote = None
        elif char in "'\"":
            quote = (char, i)
        elif char in _OPEN:
            stack.append((char, i))
        elif char in _CLOSE:
            if not stack or stack[-1][0] != _CLOSE[char]:
                raise span.error(f"unbalanced '{char}': no matching '{_CLOSE[char]}' before it", i)
            stack.pop()
        elif char in seps and not stack:
            if seps == " \t\n\r" and start == i:  # runs of whitespace
                start = i + 1
                continue
            parts.append(span.sub(start, i))
            start = i + 1
    if quote:
        raise span.error(f"unclosed quote {quote[0]}: add the closing {quote[0]}", quote[1])
    if stack:
        char, i = stack[-1]
        raise span.error(f"unclosed '{char}': add the closing '{_OPEN[char]}'", i)
    if seps != " \t\n\r" or start < len(span.text):
        parts.append(span.sub(start))
    return parts


def tokens(text: str | Sequence[str]) -> list[_Span]:
    """Split ``text`` into shell-like tokens at top-level whitespace (quotes kept).

    A sequence is already split (e.g. by ``shlex.split``): each string is one token,
    whitespace included, and errors show them joined by spaces.
    """
    if isinstance(text, str):
        return _split(_Span(text, text, 0), " \t\n\r")
    if not all(isinstance(token, str) for token in text):
        raise TypeError(f"expected a string or a list of strings, got {text!r}")
    whole = " ".join(text)
    spans, offset = [], 0
    for token in text:
        span = _Span(token, whole, offset)
        if not token:
            raise span.error("empty token in the list: remove it, or write key=value")
        spans.append(span)
        offset += len(token) + 1
    return spans


def _number(span: _Span, what: str, *, si: bool = False) -> Decimal:
    """Parse one number part; an empty part means 0."""
    text = span.text
    if text == "":
        return Decimal(0)
    if _NUMBER.fullmatch(text):
        return Decimal(text)
    match = _SI_NUMBER.fullmatch(text) if si else None
    if match:
        return Decimal(match.group(1) + SI_EXPONENTS[match.group(2)])
    prefix = _NUMBER.match(text)
    at = prefix.end() if prefix else 0
    raise span.error(
        f"expected a number for the {what}, got '{text}' (quote an item, e.g. '10:30',"
        " to pass it as text)",
        at,
    )


def _digits(text: str) -> tuple[int, int]:
    """(integer digits, decimal digits) of a number as written, ignoring sign/exponent."""
    mantissa = text.lstrip("+-").lower().split("e")[0]
    whole, _, frac = mantissa.partition(".")
    return len(whole), len(frac)


def _is_exponent(text: str) -> bool:
    return text in SI_EXPONENTS or bool(_EXPONENT.fullmatch(text))


def _exponent(text: str) -> str:
    return SI_EXPONENTS.get(text) or text.lower()


def _range(span: _Span) -> Node:
    """``start:stop[:step][:suffix]`` or ``value:suffix``."""
    parts = _split_colons(span)
    exponent = ""
    if len(parts) >= 2 and _is_exponent(parts[-1].text):
        exponent = _exponent(parts.pop().text)
    if len(parts) > 3:
        raise parts[3].error(f"too many parts in a range: expected {_RANGE_FORM}")
    if not any(part.text for part in parts):
        # Only colons: ":k" would otherwise become the bare text "e3", ":" the value 0.
        quoted = f"quote the item ('{span.text}') to pass it as text"
        if exponent:
            suffix = span.text.rpartition(":")[2]
            raise span.error(
                f"the suffix '{suffix}' needs a number before it: write e.g. 2:{suffix} or"
                f" 1:3:{suffix}, or {quoted}"
            )
        raise span.error(f"a range needs numbers: write e.g. 1:3 or 0:1:0.1, or {quoted}")
    if len(parts) == 1:
        value = parts[0]
        _number(value, "value")
        return Literal(value.text if not exponent else with_exponent(value.text, exponent))
    names = ("start", "stop", "step")
    numbers = [_number(part, names[i]) for i, part in enumerate(parts)]
    start, stop = numbers[0], numbers[1]
    step = numbers[2] if len(numbers) == 3 else Decimal(1)
    if step == 0:
        raise parts[2].error("the step of a range cannot be zero")
    if step > 0 and start > stop:
        hint = "use a negative step to count down" if len(parts) == 2 else "swap start and stop"
        raise span.error(f"range start {parts[0].text} is after stop {parts[1].text}: {hint}")
    if step < 0 and start < stop:
        raise parts[2].error(
            f"negative step {parts[2].text} but start {parts[0].text or 0} is before stop "
            f"{parts[1].text or 0}: use a positive step or swap start and stop"
        )
    texts = [part.text for part in parts]
    integer = not any(c in t for t in texts for c in ".eE")
    digits = [_digits(t) for t in texts]
    precision = max(max(d[0] for d in digits) + max(d[1] for d in digits), 1)
    return Range(start, stop, step, integer, precision, exponent, stepped=len(parts) == 3)


def _split_colons(span: _Span) -> list[_Span]:
    parts, start = [], 0
    for i, char in enumerate(span.text):
        if char == ":":
            parts.append(span.sub(start, i))
            start = i + 1
    parts.append(span.sub(start))
    return parts


def _function(span: _Span, name: str) -> Node:
    """``log(start:stop:num)`` or ``lin(start:stop:num)``."""
    inner = span.sub(len(name) + 1, len(span.text) - 1)
    parts = _split_colons(inner)
    form = f"{name}(start:stop:num)"
    search = _SEARCH.get()
    if len(parts) < (2 if search else 3):
        hint = " (log(start:stop) alone is a search range, for optimize: space)"
        raise inner.error(f"{name}() needs three parts: {form}{hint}", len(inner.text))
    if len(parts) > 3:
        raise parts[3].error(f"too many parts: expected {form}")
    start = _number(parts[0], "start", si=True)
    stop = _number(parts[1], "stop", si=True)
    num = 0  # a continuous search range
    if len(parts) == 3:
        if not re.fullmatch(r"\+?\d+", parts[2].text) or int(parts[2].text) < 1:
            raise parts[2].error(f"num must be a whole number of values >= 1 in {form}")
        num = int(parts[2].text)
    if search and start >= stop:
        raise span.error(f"{name}() start {parts[0].text} must be below stop {parts[1].text}")
    if name == "lin":
        return LinSpace(start, stop, num)
    for part, value in ((parts[0], start), (parts[1], stop)):
        if value <= 0:
            raise part.error(f"log() bounds must be positive, got {part.text or 0}")
    return LogSpace(start, stop, num)


def _product(span: _Span) -> Node:
    """Text pieces and parenthesised groups: ``(1,5)e-(1:3)``.

    A bare SI letter right after a group stands for its exponent: ``(1:3)k``.
    """
    pieces: list[Node] = []
    depth, start, after_group = 0, 0, False

    def text_piece(text: str) -> None:
        if text:
            pieces.append(Literal(SI_EXPONENTS.get(text, text) if after_group else text))

    for i, char in enumerate(span.text):
        if char == "(":
            if depth == 0:
                text_piece(span.text[start:i])
                start = i + 1
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                group = span.sub(start, i)
                if not group.text:
                    raise span.error("empty parentheses: put values inside, e.g. (1,2)", i)
                pieces.append(parse_values(group))
                start, after_group = i + 1, True
    text_piece(span.text[start:])
    return Product(tuple(pieces))


def _item(span: _Span) -> Node:
    text = span.text
    if not text:
        raise span.error("empty value in a comma list: remove the extra comma")
    if text[0] in "'\"[{" or "${" in text:
        return Literal(text)  # quoted text, Hydra lists, dicts and interpolations
    function = _FUNCTION.match(text)
    if (
        function
        and text.endswith(")")
        and _closing(text, len(function.group(0)) - 1) == len(text) - 1
    ):
        return _function(span, function.group(1))
    if "(" in text:
        return _product(span)
    if ":" in text:
        return _range(span)
    match = _SI_NUMBER.fullmatch(text)
    if match:
        return Literal(with_exponent(match.group(1), SI_EXPONENTS[match.group(2)]))
    return Literal(text)


def _closing(text: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i
    return -1


def parse_values(span: _Span) -> Node:
    """Parse a value expression: a comma list of items."""
    if span.text == "":
        return Literal("")
    items = tuple(_item(part) for part in _split(span, ","))
    return items[0] if len(items) == 1 else ValueList(items)


def parse_param(span: _Span, key: str | None = None, exponent: str = "") -> Param:
    """Parse ``key[/suffix]=values`` (or only ``values`` when ``key`` is given)."""
    eq = _top_level_eq(span.text)
    if eq < 0:
        if key is None:
            raise span.error(f"expected key=value, got '{span.text}'")
        value = span
    else:
        key, value = span.text[:eq], span.sub(eq + 1)
        if not key:
            raise span.error("empty key before '=': write key=value")
        second = _bare_eq(value.text)
        if second >= 0:
            # Hydra rejects it too ("mismatched input '='"): a missing space, or text.
            comma = value.text.rfind(",", 0, second)
            split = (
                f", or put a space between two parameters ({key}={value.text[:comma]}"
                f" {value.text[comma + 1 :]})"
                if comma >= 0
                else ""
            )
            raise value.error(
                f"a second '=' in the value of '{key}': quote the value ({key}='{value.text}')"
                f" or escape the '=' (\\=) to pass it as text{split}",
                second,
            )
        head, slash, tail = key.rpartition("/")
        exponent = ""
        if slash and head and _is_exponent(tail):
            key, exponent = head, _exponent(tail)
    node = parse_values(value)
    if exponent:
        for item in node.items if isinstance(node, ValueList) else (node,):
            if isinstance(item, Literal) and not _NUMBER.fullmatch(item.text):
                raise value.error(
                    f"the key suffix applies to numbers, got '{item.text}': drop the suffix"
                    " or write numbers"
                )
    return Param(key, node, exponent)


def _top_level_eq(text: str) -> int:
    for i, char in enumerate(text):
        if char == "=":
            return i
        if char in "'\"([{":
            return -1
    return -1


def _bare_eq(text: str) -> int:
    """Index of the first ``=`` outside quotes, brackets and ``${...}``, unescaped; or -1."""
    depth, quote, escaped = 0, "", False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif quote:
            quote = "" if char == quote else quote
        elif char == "\\":
            escaped = True
        elif char in "'\"":
            quote = char
        elif char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth -= 1
        elif char == "=" and depth == 0:
            return i
    return -1


def reject_pipes(span: _Span) -> None:
    """Raise if ``span`` has top-level ``|`` alternatives (allowed only in ``each``)."""
    segments = _split(span, "|")
    if len(segments) > 1:
        at = segments[1].offset - span.offset - 1
        raise span.error("'|' alternatives are only allowed in 'each' (one batch each)", at)


def parse_token(span: _Span) -> Param | Pipe:
    """Parse one token of an ``each`` string: a parameter, or pipe alternatives."""
    segments = _split(span, "|")
    if len(segments) == 1:
        return parse_param(span)
    alternatives: list[Param] = []
    for segment in segments:
        if not segment.text:
            raise segment.error("empty alternative around '|': write a=1,2|3,4")
        previous = alternatives[-1] if alternatives else None
        alternatives.append(
            parse_param(
                segment,
                previous.key if previous else None,
                previous.exponent if previous else "",
            )
        )
    return Pipe(tuple(alternatives))
