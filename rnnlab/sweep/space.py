"""Search spaces: dimensions, products and unions of them, stable ids, and the CLI spec.

A *configuration* is a flat ``dict`` of named scalars, e.g.
``{"cell": "lstm", "learning_rate": 3e-3, "forget_bias": 1.0, "seed": 0}``.
A :class:`Space` is a union of cartesian products of :class:`Dimension` s; every
dimension expands to a finite tuple of values, so a space is a finite list of
configurations and every configuration gets a stable :func:`config_id`.

Random dimensions (``loguniform``, ``uniform``) are *stratified*: ``n`` draws,
one uniformly inside each of ``n`` equal-width strata of ``[low, high]`` (in log
space for ``loguniform``), sorted, at full float precision: ``n`` draws are ``n``
distinct configurations (a range too narrow to hold them is an error).  This is
Latin-hypercube sampling in one dimension: it covers the range evenly (heatmaps get
one column per draw) while still drawing continuous values (Bergstra & Bengio 2012).
The draws are a pure function of ``(space seed, dimension name, spec)``, so the same
``--learning-rate`` gives the same learning rates in every product of a union and on every rerun.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Dimension",
    "Space",
    "choice",
    "config_id",
    "configurations",
    "loggrid",
    "loguniform",
    "parse_seeds",
    "parse_spec",
    "product",
    "seeds",
    "uniform",
]

KINDS = ("choice", "loguniform", "uniform", "loggrid")
#: The most configurations a space may expand to: more would take minutes and
#: gigabytes just to list (about 1 KiB per configuration).
MAX_CONFIGURATIONS = 1_000_000


@dataclass(frozen=True)
class Dimension:
    """One axis of a search space.

    Attributes:
      kind: ``"choice"`` (explicit values), ``"loguniform"`` / ``"uniform"``
        (``n`` stratified random draws in ``[low, high]``) or ``"loggrid"``
        (``n`` geometrically spaced values from ``low`` to ``high`` inclusive).
      values: the explicit values of a ``choice``.
      low, high, n: the range and count of the other kinds.
    """

    kind: str
    values: tuple = ()
    low: float = 0.0
    high: float = 0.0
    n: int = 0

    def expand(self, name: str, seed: int = 0) -> tuple:
        """The dimension's values; random kinds draw from ``hash(seed, name, self)``."""
        if self.kind == "choice":
            return self.values
        if self.kind == "loggrid":
            values = tuple(float(v) for v in np.geomspace(self.low, self.high, self.n))
            if len(set(values)) < self.n:
                raise ValueError(
                    f"{name}: {self.describe()} repeats values: the range holds too few "
                    "floats; widen it or lower N"
                )
            return values
        stream = _stable_hash({"seed": seed, "name": name, "dimension": self.describe()})
        rng = np.random.default_rng(int(stream, 16))
        if self.kind == "loguniform":
            lo, hi = math.log(self.low), math.log(self.high)
        else:
            lo, hi = self.low, self.high
        edges = np.linspace(lo, hi, self.n + 1)
        draws = edges[:-1] + rng.uniform(size=self.n) * np.diff(edges)
        draws = np.exp(draws) if self.kind == "loguniform" else draws
        # Full precision: rounding would merge draws (and silently drop configurations).
        values = tuple(float(v) for v in np.sort(np.clip(draws, self.low, self.high)))
        if len(set(values)) < self.n:
            raise ValueError(
                f"{name}: {self.describe()} gives only {len(set(values))} distinct values out "
                f"of {self.n}: the range holds too few floats; widen it or lower N"
            )
        return values

    @property
    def size(self) -> int:
        """How many values :meth:`expand` gives."""
        return len(self.values) if self.kind == "choice" else self.n

    @property
    def is_log(self) -> bool:
        return self.kind in ("loguniform", "loggrid")

    def describe(self) -> str:
        """The dimension as CLI spec text (round-trips through :func:`parse_spec`)."""
        if self.kind == "choice":
            return ",".join(str(v) for v in self.values)
        return f"{self.kind}:{_exact(self.low)}:{_exact(self.high)}:{self.n}"


def _exact(value: float) -> str:
    """``value`` as short text that parses back to the same float (``1e-04`` -> ``0.0001``)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def choice(values: Iterable) -> Dimension:
    """Explicit values (a grid axis): ``choice([0.0, 1.0, 2.0])``."""
    values = tuple(values)
    if not values:
        raise ValueError("choice(values) needs at least one value; got an empty sequence")
    if len(set(map(repr, values))) != len(values):
        raise ValueError(f"choice(values) has repeated values {values}; list each value once")
    return Dimension("choice", values=values)


def _ranged(kind: str, low: float, high: float, n: int) -> Dimension:
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise ValueError(f"{kind} needs finite low < high; got low={low:g}, high={high:g}")
    if kind in ("loguniform", "loggrid") and low <= 0:
        raise ValueError(f"{kind} needs low > 0 (it spaces values in log space); got low={low:g}")
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"{kind} needs a whole number of values n >= 1; got n={n!r}")
    if n > MAX_CONFIGURATIONS:
        raise ValueError(
            f"{kind} with n={int(n):,} values exceeds the limit of {MAX_CONFIGURATIONS:,} "
            f"configurations (its values alone take {_memory(n)}); lower n"
        )
    return Dimension(kind, low=low, high=high, n=int(n))


def _memory(count: float) -> str:
    """A rough size of ``count`` configurations held as Python dicts (~1 KiB each)."""
    size = count * 1024.0
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"about {size:.3g} {unit}"
        size /= 1024
    return f"about {size:.3g} TiB"


def loguniform(low: float, high: float, n: int) -> Dimension:
    """``n`` stratified draws, log-uniform in ``[low, high]`` (learning rates)."""
    return _ranged("loguniform", low, high, n)


def uniform(low: float, high: float, n: int) -> Dimension:
    """``n`` stratified draws, uniform in ``[low, high]``."""
    return _ranged("uniform", low, high, n)


def loggrid(low: float, high: float, n: int) -> Dimension:
    """``n`` geometrically spaced values from ``low`` to ``high`` inclusive."""
    return _ranged("loggrid", low, high, n)


def seeds(count_or_values: int | Sequence[int]) -> Dimension:
    """``seeds(4)`` is seeds ``0, 1, 2, 3``; ``seeds([3, 7])`` lists them."""
    if isinstance(count_or_values, int) and not isinstance(count_or_values, bool):
        if count_or_values < 1:
            raise ValueError(f"seeds needs a count >= 1; got {count_or_values}")
        return choice(range(count_or_values))
    values = tuple(count_or_values)
    if not all(isinstance(v, (int, np.integer)) and v >= 0 for v in values):
        raise ValueError(f"seeds must be non-negative integers; got {values}")
    return choice(int(v) for v in values)


@dataclass(frozen=True)
class Space:
    """A union of cartesian products of dimensions.

    ``product(a=..., b=...) | product(a=..., c=...)`` sweeps ``a x b`` and ``a x c``;
    a configuration that appears in both is kept once.
    """

    products: tuple[tuple[tuple[str, Dimension], ...], ...]

    def __or__(self, other: Space) -> Space:
        return Space(self.products + other.products)

    @property
    def names(self) -> tuple[str, ...]:
        """Every dimension name, in first-seen order."""
        return tuple(dict.fromkeys(name for prod in self.products for name, _ in prod))

    def dimensions(self) -> dict[str, Dimension]:
        """Name to dimension (the first product that names it wins)."""
        out: dict[str, Dimension] = {}
        for prod in self.products:
            for name, dim in prod:
                out.setdefault(name, dim)
        return out


def product(**dimensions: Dimension | Any) -> Space:
    """The cartesian product of named dimensions; a bare value or list becomes a ``choice``.

    Example:
      >>> space = product(cell="lstm", learning_rate=loguniform(1e-4, 1e-1, 8), seed=seeds(2))
      >>> len(configurations(space))
      16
    """
    axes = []
    for name, dim in dimensions.items():
        if not isinstance(dim, Dimension):
            is_sequence = isinstance(dim, (list, tuple, range))
            dim = choice(dim if is_sequence else [dim])
        axes.append((name, dim))
    return Space((tuple(axes),))


def _stable_hash(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha1(text.encode()).hexdigest()


def config_id(config: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> str:
    """A 12-hex-digit id of ``config`` (and of the fixed ``context``, e.g. step count).

    The id is a hash of the sorted JSON, so it does not depend on key order, on
    the sweep's size or on the order configurations are run in; a changed
    ``context`` (a different base config) changes every id, so resumed results
    are never reused for a different experiment.
    """
    payload = {k: _plain(v) for k, v in config.items() if k != "id"}
    if context:
        payload = {"config": payload, "context": {k: _plain(v) for k, v in context.items()}}
    return _stable_hash(payload)[:12]


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return value


def configurations(space: Space, seed: int = 0, context: Mapping | None = None) -> list[dict]:
    """Expands ``space`` into configurations, each with a stable ``"id"`` first.

    Args:
      space: the search space.
      seed: the seed of the random dimensions' draws.
      context: fixed settings hashed into every id (see :func:`config_id`).

    Returns:
      A list of dicts in product order, duplicates removed.
    """
    total = sum(math.prod(dim.size for _, dim in prod) for prod in space.products)
    if total > MAX_CONFIGURATIONS:
        sizes = " | ".join(" x ".join(f"{n}={d.size}" for n, d in prod) for prod in space.products)
        raise ValueError(
            f"the space has {total:,} configurations ({sizes}), more than the limit of "
            f"{MAX_CONFIGURATIONS:,} ({_memory(total)} to list them); sweep fewer values"
        )
    configs, seen = [], set()
    for prod in space.products:
        names = [name for name, _ in prod]
        axes = [dim.expand(name, seed) for name, dim in prod]
        for values in itertools.product(*axes):
            config = dict(zip(names, values, strict=True))
            cid = config_id(config, context)
            if cid not in seen:
                seen.add(cid)
                configs.append({"id": cid, **config})
    return configs


def _number(text: str, argument: str, whole: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"{argument}: {text!r} in {whole!r} is not a number; write e.g. 1e-3, 0.5 or 2"
        ) from None


def _scalar(text: str) -> Any:
    """``"2"`` -> 2, ``"0.5"`` -> 0.5, ``"lstm"`` -> ``"lstm"``, ``"true"`` -> True."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_spec(text: str, name: str = "value") -> Dimension:
    """Parses a readable CLI sweep spec into a :class:`Dimension`.

    Forms:
      - ``0,1,2`` or ``lstm,gru`` or ``3e-3``: explicit values (``choice``);
      - ``loguniform:LOW:HIGH:N``: ``N`` stratified log-uniform draws;
      - ``uniform:LOW:HIGH:N``: ``N`` stratified uniform draws;
      - ``loggrid:LOW:HIGH:N``: ``N`` geometrically spaced values.

    Args:
      text: the spec.
      name: the option it came from (``"--learning-rate"``), used in error messages.

    Raises:
      ValueError: naming the option, the bad part and the expected form.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(
            f"{name}: empty sweep spec; give values like 0,1,2 or loguniform:1e-4:1e-1:8"
        )
    text = text.strip()
    head = text.split(":", 1)[0].lower()
    if ":" in text and head in KINDS[1:]:
        parts = text.split(":")
        if len(parts) != 4:
            raise ValueError(
                f"{name}: {text!r} must have the form {head}:LOW:HIGH:N "
                f"(e.g. {head}:1e-4:1e-1:8); got {len(parts) - 1} fields after {head!r}"
            )
        low, high = (_number(p, name, text) for p in parts[1:3])
        count = _number(parts[3], name, text)
        try:
            return _ranged(head, low, high, count)
        except ValueError as error:
            raise ValueError(f"{name}: {error} (in {text!r})") from None
    if ":" in text:
        raise ValueError(
            f"{name}: unknown sweep kind {head!r} in {text!r}; use a comma list like 0,1,2 "
            f"or one of {', '.join(k + ':LOW:HIGH:N' for k in KINDS[1:])}"
        )
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise ValueError(f"{name}: empty item in {text!r}; separate values by single commas")
    try:
        return choice(_scalar(item) for item in items)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None


def parse_seeds(text: str, name: str = "--seeds") -> Dimension:
    """``"4"`` -> seeds 0..3; ``"0,5,7"`` -> those seeds."""
    dim = parse_spec(text, name)
    if dim.kind != "choice" or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in dim.values
    ):
        raise ValueError(f"{name}: {text!r} must be a count like 4 or a list like 0,5,7")
    try:
        return seeds(dim.values[0]) if len(dim.values) == 1 else seeds(dim.values)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None
