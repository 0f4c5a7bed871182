"""Expand a job into batches and trials, lazily.

A :class:`Plan` is a job compiled once: its sets parsed into typed sweep objects, the
command-line overrides applied, and ``add`` merged. Counting a plan multiplies lengths;
streaming it walks a lazy product, so a million-trial job costs constant memory.
"""

from __future__ import annotations

import itertools
import math
import shlex
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from sweepflow.errors import JobError, SweepSyntaxError
from sweepflow.spec.jobs import Job, SweepSet
from sweepflow.syntax import parse
from sweepflow.syntax.nodes import Param, Pipe

__all__ = ["MAX_TRIALS", "CompiledSet", "Plan", "check_size", "compile_job"]

# Value sequences up to this length are materialised (fast C product); longer ones
# (a range of a million values) are iterated lazily to keep memory constant.
_MATERIALISE = 65_536

Assignment = tuple[tuple[str, Sequence[str]], ...]  # (key, values) items of one batch


def _seq(values: Iterable[str] | Sequence[str]) -> Sequence[str] | Iterable[str]:
    if isinstance(values, Sequence):
        return values
    return tuple(values) if len(values) <= _MATERIALISE else values  # type: ignore[arg-type]


def _product(seqs: list) -> Iterator[tuple]:
    """``itertools.product`` (last varies fastest) that never materialises huge pools."""
    pools = [_seq(s) for s in seqs]
    if all(isinstance(p, Sequence) for p in pools):
        yield from itertools.product(*pools)
        return
    if not pools:
        yield ()
        return
    *outer, last = pools
    for prefix in _product(outer):
        for value in last:
            yield (*prefix, value)


@dataclass
class _Factor:
    """One ``each``-level factor: a list of options, each a batch fragment."""

    length: int  # number of options (batches)
    trials: int  # number of trials across all options
    options: Iterable  # lazily yields Assignment fragments
    keys: tuple[str, ...]


def _param_factor(param: Param) -> _Factor:
    values = param
    options = _Options(lambda: (((param.key, (v,)),) for v in values), len(param))
    return _Factor(len(param), len(param), options, (param.key,))


def _pipe_factor(pipe: Pipe) -> _Factor:
    options = [((alt.key, tuple(alt)),) for alt in pipe.alternatives]
    trials = sum(len(alt) for alt in pipe.alternatives)
    return _Factor(len(options), trials, options, pipe.keys)


class _Options:
    """A re-iterable, sized, lazy list of options."""

    def __init__(self, make, length: int) -> None:
        self._make, self._length = make, length

    def __iter__(self):
        return self._make()

    def __len__(self) -> int:
        return self._length


@dataclass
class CompiledSet:
    """One parameter set, parsed, with overrides applied.

    Attributes:
        each: Batch-level tokens (parameters and pipes), in order.
        zipped: Linked parameters (equal lengths), advanced together.
        all: Trial-level parameters swept inside each batch.
        add: Verbatim arguments (job-level merged with the set's).
    """

    each: list[Param | Pipe] = field(default_factory=list)
    zipped: list[Param] = field(default_factory=list)
    all: list[Param] = field(default_factory=list)
    add: list[str] = field(default_factory=list)

    def factors(self) -> list[_Factor]:
        factors = [_pipe_factor(t) if isinstance(t, Pipe) else _param_factor(t) for t in self.each]
        if self.zipped:
            rows = list(zip(*(tuple(p) for p in self.zipped), strict=True))
            keys = tuple(p.key for p in self.zipped)
            options = [tuple((k, (v,)) for k, v in zip(keys, row, strict=True)) for row in rows]
            factors.append(_Factor(len(rows), len(rows), options, keys))
        return factors

    def count(self) -> tuple[int, int]:
        """(batches, trials) of this set, without expanding it."""
        factors = self.factors()
        inner = math.prod(len(p) for p in self.all)
        # A pipe has one batch per alternative but the sum of their values as trials.
        batches = math.prod(f.length for f in factors)
        return batches, math.prod(f.trials for f in factors) * inner

    def iter_batches(self) -> Iterator[Assignment]:
        all_items = tuple((p.key, _seq(p)) for p in self.all)
        for combo in _product([f.options for f in self.factors()]):
            yield tuple(itertools.chain.from_iterable(combo)) + all_items

    def iter_trials(self) -> Iterator[dict[str, str]]:
        """Every trial of the set, in batch order."""
        if self._flat():
            # Fast path: every key fixed, so one flat product; the loop stays in C.
            keys = [p.key for p in self.each if isinstance(p, Param)] + [p.key for p in self.all]
            return map(dict, map(zip, itertools.repeat(keys), _product([*self.each, *self.all])))
        return (trial for _, trial in self.iter_indexed_trials())

    def _flat(self) -> bool:
        return all(isinstance(t, Param) for t in self.each) and not self.zipped

    def iter_indexed_trials(self) -> Iterator[tuple[int, dict[str, str]]]:
        """Every trial with the index of its batch within the set."""
        if self._flat():  # batches are equal blocks of the flat product
            keys = [p.key for p in self.each if isinstance(p, Param)] + [p.key for p in self.all]
            inner = math.prod(len(p) for p in self.all)
            for i, combo in enumerate(_product([*self.each, *self.all])):
                yield i // inner, dict(zip(keys, combo, strict=True))
            return
        for index, batch in enumerate(self.iter_batches()):
            keys = [key for key, _ in batch]
            for combo in _product([values for _, values in batch]):
                yield index, dict(zip(keys, combo, strict=True))


def _check_keys(job: Job, index: int, compiled: CompiledSet) -> None:
    seen: dict[str, str] = {}
    groups = [("each", t) for t in compiled.each] + [("zip", p) for p in compiled.zipped]
    groups += [("all", p) for p in compiled.all]
    for where, token in groups:
        keys = token.keys if isinstance(token, Pipe) else (token.key,)
        for key in keys:
            if key in seen:
                raise job.error(
                    f"sets key '{key}' twice ({seen[key]} and {where}): keep one", "sets", index
                )
            seen[key] = where


def _add_key(item: str) -> str:
    return item.split("=", 1)[0].lstrip("+~")


def _merge_add(job_add: list[str], set_add: list[str]) -> list[str]:
    """Job-level ``add`` merged with a set's ``add`` key by key, the set winning."""
    merged = {_add_key(item): item for item in job_add}
    merged.update({_add_key(item): item for item in set_add})
    return list(merged.values())


def _seeds(spec: int | str | None, job: Job, path: tuple) -> list[Param]:
    if spec is None:
        return []
    if isinstance(spec, int):
        if spec < 1:
            raise job.error(f"has seeds: {spec}; give a count >= 1 or a token like seed=0:4", *path)
        return parse(f"seed=0:{spec - 1}", pipes=False)  # type: ignore[return-value]
    return _parse(job, spec, path, pipes=False)  # type: ignore[return-value]


def _parse(job: Job, text: str, path: tuple, *, pipes: bool = True) -> list[Param | Pipe]:
    try:
        return parse(text, pipes=pipes)
    except SweepSyntaxError as exc:
        raise JobError(
            f"Job '{job.key}' has a sweep syntax error in {job.where(*path)}: {exc.one_line()}"
        ) from exc


def _split_add(job: Job, text: str, path: tuple) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise job.error(f"has an unparsable add: {exc}", *path) from exc


@dataclass
class Plan:
    """A job compiled for expansion (overrides applied)."""

    job: Job
    sets: list[CompiledSet]
    overrides: list[str]
    space: CompiledSet | None = None  # an ``optimize:`` job: the space (each) and add

    @classmethod
    def compile(cls, job: Job, overrides: list[str]) -> Plan:
        """Parse every set of ``job`` and apply command-line ``overrides``.

        An ``optimize:`` job compiles to no sets and a :attr:`space`: its ``space``
        tokens as ``each`` (overrides replace keys) and the job's ``add``.

        Raises:
            JobError: The job's own semantic errors (with file:line and key path).
            SweepSyntaxError: An override that does not parse.
        """
        if job.kind == "llc":  # its trials come from its experiments file; overrides are --set
            return cls(job, [], list(overrides))
        job.check_preload()
        if job.optimize is not None:
            return cls(job, [], list(overrides), _compile_space(job, overrides))
        tokens = [t for o in overrides for t in _parse_override(o)]
        override_keys = {k for t in tokens for k in (t.keys if isinstance(t, Pipe) else (t.key,))}
        job_add = _split_add(job, job.add, ("add",))
        sets = []
        for index, spec in enumerate(job.sets or (SweepSet(),)):
            compiled = cls._compile_set(job, index, spec, job_add)
            if tokens:
                compiled = _override(compiled, tokens, override_keys)
            _check_keys(job, index, compiled)
            sets.append(compiled)
        return cls(job, sets, list(overrides))

    @staticmethod
    def _compile_set(job: Job, index: int, spec: SweepSet, job_add: list[str]) -> CompiledSet:
        path = ("sets", index) if job.sets else ()
        each = _parse(job, spec.each, (*path, "each"))
        zipped = _parse(job, spec.zip, (*path, "zip"), pipes=False)
        lengths = {p.key: len(p) for p in zipped}  # type: ignore[union-attr]
        if len(set(lengths.values())) > 1:
            sizes = ", ".join(f"{k}: {n}" for k, n in lengths.items())
            raise job.error(f"has zip lists of unequal length ({sizes}): make them equal", *path)
        all_ = _parse(job, spec.all, (*path, "all"), pipes=False)
        seeds_path = (*path, "seeds") if spec.seeds is not None else ("seeds",)
        all_ += _seeds(spec.seeds if spec.seeds is not None else job.seeds, job, seeds_path)
        add = job_add
        if spec.add is not None:
            add = _merge_add(job_add, _split_add(job, spec.add, (*path, "add")))
        return CompiledSet(each, zipped, all_, add)  # type: ignore[arg-type]

    def count(self) -> tuple[int, int]:
        """(batches, trials) of the whole job, without expanding it."""
        counts = [s.count() for s in self.sets]
        return sum(b for b, _ in counts), sum(t for _, t in counts)

    def iter_batches(self) -> Iterator[tuple[CompiledSet, Assignment]]:
        """Every batch with its set, in order."""
        for compiled in self.sets:
            for batch in compiled.iter_batches():
                yield compiled, batch

    def iter_batch_args(self) -> Iterator[list[str]]:
        """Every batch as ``key=value`` items (``all`` lists joined by commas)."""
        for _, batch in self.iter_batches():
            yield [f"{key}=" + ",".join(values) for key, values in batch]

    def iter_trials(self) -> Iterator[dict[str, str]]:
        """Every trial (a concrete assignment), in batch order."""
        return itertools.chain.from_iterable(s.iter_trials() for s in self.sets)

    def batches(self) -> list[list[str]]:
        """Every batch: the ``each`` assignment followed by the ``all`` lists."""
        return [list(batch) for batch in self.iter_batch_args()]

    def trials(self) -> list[dict[str, str]]:
        """Every concrete assignment, in batch order (``all`` lists expanded)."""
        return list(self.iter_trials())


#: The most trials a run takes unless told otherwise (``--max-trials``).
MAX_TRIALS = 1_000_000


def check_size(plan: Plan, limit: int = MAX_TRIALS) -> int:
    """The plan's number of trials, counted without expanding; raise if over ``limit``.

    Raises:
        JobError: More trials than ``limit`` (with the count and the job's place).
    """
    trials = plan.count()[1]
    if trials > limit:
        raise plan.job.error(
            f"has {trials:,} trials, more than --max-trials {limit:,}: narrow the sweep "
            "(sweepflow jobs shows the count), or raise --max-trials",
            "sets",
        )
    return trials


def compile_job(job: Job, overrides: Sequence[str] = ()) -> Plan:
    """Compile ``job`` (and command-line style ``overrides``) into a lazy plan.

    Raises:
        JobError: The job's own semantic errors (with file:line and key path).
        SweepSyntaxError: An override that does not parse.
    """
    return Plan.compile(job, list(overrides))


def _parse_override(text: str, *, search: bool = False) -> list[Param | Pipe]:
    if "=" not in text:
        raise SweepSyntaxError(
            f"override '{text}' has no '=': write key=value (put program arguments after --)",
            text,
            0,
        )
    return parse(text, pipes=not search, search=search)


def _compile_space(job: Job, overrides: list[str]) -> CompiledSet:
    """The search space of an ``optimize:`` job, overrides applied, with its ``add``."""
    assert job.optimize is not None
    if job.kind == "submit" or job.per == "batch":
        what = "submit:" if job.kind == "submit" else "per: batch"
        raise job.error(f"has optimize: with {what}: a search runs one trial per task", "optimize")
    for index, spec in enumerate(job.sets):
        swept = [k for k in ("each", "all", "zip", "seeds") if getattr(spec, k)]
        if swept:
            raise job.error(
                f"has optimize: and sets with {swept[0]}: the search takes its parameters "
                "from optimize.space (fixed values go in add)",
                "sets",
                index,
                swept[0],
            )
    if job.seeds is not None:
        raise job.error("has optimize: and seeds: put seed=0 in add or in the space", "seeds")
    path = ("optimize", "space")
    try:
        space = parse(job.optimize.space, pipes=False, search=True)
    except SweepSyntaxError as exc:
        raise JobError(
            f"Job '{job.key}' has a syntax error in its search space ({job.where(*path)}): "
            f"{exc.one_line()}"
        ) from exc
    add = _split_add(job, job.add, ("add",))
    for index, spec in enumerate(job.sets):
        if spec.add is not None:
            add = _merge_add(add, _split_add(job, spec.add, ("sets", index, "add")))
    compiled = CompiledSet(each=list(space), add=add)
    tokens = [t for o in overrides for t in _parse_override(o, search=True)]
    if tokens:
        compiled = _override(compiled, tokens, {t.key for t in tokens})  # type: ignore[union-attr]
    seen: set[str] = set()
    for param in compiled.each:
        if param.key in seen:  # type: ignore[union-attr]
            raise job.error(f"sets key '{param.key}' twice in its search space: keep one", *path)  # type: ignore[union-attr]
        seen.add(param.key)  # type: ignore[union-attr]
    return compiled


def _override(compiled: CompiledSet, tokens: list, keys: set[str]) -> CompiledSet:
    def kept(token: Param | Pipe) -> bool:
        own = token.keys if isinstance(token, Pipe) else (token.key,)
        return not keys.intersection(own)

    # An override takes the place of the each token it replaces (so a trial's argv, and
    # with it its cache key, is the one the job alone gives); new keys go last.
    by_key = {k: t for t in tokens for k in (t.keys if isinstance(t, Pipe) else (t.key,))}
    each: list = []
    for token in compiled.each:
        own = token.keys if isinstance(token, Pipe) else (token.key,)
        if kept(token):
            each.append(token)
        else:
            each.extend(by_key[k] for k in own if by_key[k] not in each)
    each += [t for t in tokens if t not in each]
    return CompiledSet(
        each=each,
        zipped=[p for p in compiled.zipped if kept(p)],
        all=[p for p in compiled.all if kept(p)],
        add=[a for a in compiled.add if _add_key(a) not in keys],
    )
