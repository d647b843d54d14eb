"""Argument checks shared by the whole package: one home for each kind of validation.

Every check raises :class:`ArgumentError` (a ``ValueError``) whose message names the
argument, what it got and what would be accepted, so a user can fix the call without
reading the source; its ``argument`` attribute lets a command line name the flag.
"""

from __future__ import annotations

import difflib
import math
import operator
from collections.abc import Iterable


class ArgumentError(ValueError):
    """A bad argument: ``str(error)`` says why and how to fix it, ``error.argument`` names it.

    ``argument`` is the library's name (``"hidden_size"``, ``"out"``,
    ``"cell_options['forget_bias']"``); :mod:`rnnlab.cli` turns it into the flag.
    """

    def __init__(self, argument: str, message: str):
        super().__init__(message)
        self.argument = argument

    def __reduce__(self):  # picklable across sweep worker processes
        return (type(self), (self.argument, str(self)))


def did_you_mean(value, choices: Iterable[str]) -> str:
    """``" (did you mean 'lstm'?)"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def choice(argument: str, value, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``, else a ``ValueError`` with the closest match."""
    choices = tuple(choices)
    if value not in choices:
        raise ArgumentError(
            argument,
            f"{argument}={value!r} is not supported{did_you_mean(value, choices)}; "
            f"use one of {choices}",
        )
    return value


def integer(argument: str, value, *, minimum: int | None = None, maximum: int | None = None):
    """A Python or NumPy integer (not a bool) within ``[minimum, maximum]``, as ``int``.

    Sizes fix shapes, so tracers are rejected too.
    """
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        number = None
    low = "" if minimum is None else f" >= {minimum}"
    high = "" if maximum is None else f" <= {maximum}"
    if (
        number is None
        or (minimum is not None and number < minimum)
        or (maximum is not None and number > maximum)
    ):
        joined = " and".join(part for part in (low, high) if part)
        raise ArgumentError(argument, f"{argument} must be an int{joined}, got {value!r}")
    return number


def positive_int(argument: str, value) -> int:
    return integer(argument, value, minimum=1)


def number(
    argument: str,
    value,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_minimum: bool = False,
    strict_maximum: bool = False,
) -> float:
    """A finite real number (not a bool) within the given bounds, as ``float``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            import numpy as np

            if not (isinstance(value, np.generic) and np.isrealobj(value) and np.ndim(value) == 0):
                raise TypeError
            value = value.item()
        except TypeError:
            raise ArgumentError(
                argument, f"{argument} must be a finite number, got {value!r}"
            ) from None
    if not math.isfinite(value):
        raise ArgumentError(argument, f"{argument} must be a finite number, got {value!r}")
    bad_low = minimum is not None and (value <= minimum if strict_minimum else value < minimum)
    bad_high = maximum is not None and (value >= maximum if strict_maximum else value > maximum)
    if bad_low or bad_high:
        parts = []
        if minimum is not None:
            parts.append(f"{'>' if strict_minimum else '>='} {minimum:g}")
        if maximum is not None:
            parts.append(f"{'<' if strict_maximum else '<='} {maximum:g}")
        raise ArgumentError(argument, f"{argument} must be {' and '.join(parts)}, got {value!r}")
    return float(value)


def concrete(value):
    """A Python scalar to validate, or ``None`` for a traced or batched value (a sweep's).

    Hyperparameters that sweeps vary arrive as tracers (under ``jit``/``vmap``) or as
    arrays with a batch axis; those are not checked here.
    """
    import jax

    if isinstance(value, jax.core.Tracer) or (isinstance(value, jax.Array) and value.ndim):
        return None
    return value.item() if isinstance(value, jax.Array) else value


def hyperparameter(argument: str, value, **bounds) -> None:
    """:func:`number` for a concrete hyperparameter; traced or batched values pass."""
    import jax

    if isinstance(value, jax.core.Tracer) or (isinstance(value, jax.Array) and value.ndim):
        return
    number(argument, value.item() if isinstance(value, jax.Array) else value, **bounds)
