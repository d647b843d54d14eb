"""Estimators by name: ``"bptt"``, ``"tbptt:50"``, ``"tbptt:10:50"``, ``"rtrl"``, ``"uoro"``,
``"snap1"``, ``"diagonal_rtrl"`` (the form a config or a command line gives).

:func:`parse_estimator` validates a name without building anything (a config can check
it before any cell exists); :func:`make_estimator` builds the :class:`Estimator`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, NamedTuple

from rnnlab.cells import Cell
from rnnlab.gradients._base import Estimator, StepLoss
from rnnlab.gradients._uoro import uoro
from rnnlab.gradients.diagonal import diagonal_rtrl
from rnnlab.gradients.forward import rtrl
from rnnlab.gradients.snap import snap1
from rnnlab.gradients.truncated import bptt, check_truncation, tbptt

__all__ = ["ESTIMATORS", "EstimatorSpec", "make_estimator", "parse_estimator"]

#: Name -> factory ``(cell, step_loss, **options) -> Estimator``.
_FACTORIES = {
    "bptt": bptt,
    "tbptt": tbptt,
    "rtrl": rtrl,
    "uoro": uoro,
    "snap1": snap1,
    "diagonal_rtrl": diagonal_rtrl,
}
ESTIMATORS = tuple(_FACTORIES)


class EstimatorSpec(NamedTuple):
    """A parsed estimator name: ``EstimatorSpec("tbptt", {"k1": 50, "k2": 50})``."""

    name: str
    options: Mapping[str, Any]

    def __str__(self) -> str:
        if self.name != "tbptt":
            return self.name
        k1, k2 = self.options["k1"], self.options["k2"]
        return f"tbptt:{k1}" if k1 == k2 else f"tbptt:{k1}:{k2}"


def parse_estimator(text: str | EstimatorSpec, *, length: int | None = None) -> EstimatorSpec:
    """Parses ``"NAME"`` or ``"tbptt:K"`` / ``"tbptt:K1:K2"`` (every K1 steps, backpropagate
    K2 steps; ``"tbptt:K"`` is K1 = K2 = K).

    Args:
      text: the name, or an already parsed spec.
      length: the chunk length ``T`` the estimator will see, if known; then ``K1 > T``
        and ``T`` not a multiple of ``K1`` are errors now rather than at the first update.

    Raises:
      ValueError: naming the option: an unknown estimator (with the closest name),
        options on an estimator that takes none, a missing or non-integer truncation,
        truncation lengths <= 0, ``K2 < K1``, or ``K1 > T``.
    """
    if isinstance(text, EstimatorSpec):
        text = str(text)
    if not isinstance(text, str):
        raise ValueError(f"gradient estimator must be a string such as 'tbptt:50', got {text!r}")
    name, *arguments = text.strip().split(":")
    if name not in _FACTORIES:
        close = difflib.get_close_matches(name, ESTIMATORS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown gradient estimator {name!r}{hint}; use one of {ESTIMATORS}, with a "
            "truncation for tbptt ('tbptt:50' or 'tbptt:10:50')"
        )
    if name != "tbptt":
        if arguments:
            raise ValueError(f"gradient estimator {name!r} takes no options, got {text!r}")
        return EstimatorSpec(name, {})
    if not 1 <= len(arguments) <= 2:
        raise ValueError(
            f"tbptt needs its truncation: 'tbptt:K' (every K steps, backpropagate K steps) "
            f"or 'tbptt:K1:K2', got {text!r}"
        )
    lengths = []
    for option, value in zip(("k1", "k2"), arguments, strict=False):
        try:
            lengths.append(int(value))
        except ValueError:
            raise ValueError(
                f"tbptt truncation {option} must be an integer, got {value!r} in {text!r}"
            ) from None
    k1, k2 = lengths[0], lengths[-1]
    check_truncation(k1, k2, length)
    return EstimatorSpec("tbptt", {"k1": k1, "k2": k2})


def make_estimator(
    spec: str | EstimatorSpec, cell: Cell, step_loss: StepLoss, **options
) -> Estimator:
    """The :class:`Estimator` named by ``spec`` for ``cell`` and ``step_loss``.

    ``options`` go to the factory (``max_sensitivity_size`` for rtrl, ``epsilon`` for
    uoro, ``units`` for snap1; diagonal_rtrl reads the cell's ``linear`` declaration).

    Example::

        estimator = make_estimator("tbptt:50", rnnlab.lstm(64), step_loss)
    """
    parsed = parse_estimator(spec)
    return _FACTORIES[parsed.name](cell, step_loss, **parsed.options, **options)
