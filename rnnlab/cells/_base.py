"""The cell record: a small bundle of pure functions, in the spirit of optax."""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from typing import Any, NamedTuple

import jax

Params = Any  # a pytree of arrays
Carry = Any  # a pytree of arrays with leading batch dimensions


class Recurrence(NamedTuple):
    """The structure a cell declares to get the fast path.

    The cell's params must hold ``weight_hh [H, G*H]`` and ``bias_hh [G*H]``, and
    ``step_projected(params, carry, px_t)`` must equal
    ``pointwise(px_t, hidden(carry) @ weight_hh + bias_hh, carry)``.

    Attributes:
      hidden: ``hidden(carry) -> h: [..., H]``, the part of the carry that multiplies
        ``W_hh`` (``carry.h`` for the LSTM); must also work on carries stacked over time.
      pointwise: ``pointwise(px_t, hh_t, carry) -> (carry, y)`` with
        ``px_t, hh_t: [..., G*H]``; everything in the step except the matmul.
      additive: ``True`` when ``pointwise`` depends on ``px_t + hh_t`` only (LSTM, RNN),
        so one gate gradient serves both ``dpx_t`` and ``dhh_t``.
      pointwise_vjp: optional hand-written ``jax.vjp`` of ``pointwise``, for an additive
        cell: ``pointwise_vjp(s_t, carry) -> ((carry, y), pullback)`` with
        ``s_t = px_t + hh_t`` and ``pullback((d_carry, dy)) -> (d_s, d_carry)``, a
        :class:`jax.tree_util.Partial` whose leaves are the residuals the forward
        stacks over time.  Default ``None``: ``jax.vjp`` of ``pointwise``.
      linear_inputs: ``True`` when the cell's ``project_inputs`` is
        ``xs @ weight_ih + bias_ih`` (the built-in cells).  Then :func:`fused_scan`
        takes the raw inputs and differentiates the projection itself.
    """

    hidden: Callable[[Carry], jax.Array]
    pointwise: Callable[[jax.Array, jax.Array, Carry], tuple[Carry, jax.Array]]
    additive: bool
    pointwise_vjp: Callable | None = None
    linear_inputs: bool = False


@dataclasses.dataclass(frozen=True, eq=False)
class Cell:
    """An immutable record of pure functions describing one recurrent step.

    Attributes:
      name: a short human-readable name, e.g. ``"lstm"``.
      hidden_size: ``H``; the output ``y`` of every step has shape ``[..., H]``.
      init: ``init(key, input_size) -> params``, a pytree of arrays.
      initial_carry: ``initial_carry(batch_shape=()) -> carry``; leaves have shape
        ``[*batch_shape, ...]``.
      step: ``step(params, carry, x) -> (carry, y)`` with ``x: [..., input_size]``.
      input_size: ``input_size(params) -> int``, the feature size ``F`` the params
        expect; used to validate inputs.
      project_inputs: optional ``project_inputs(params, xs) -> px``.  The part of a
        step that depends on ``x`` only (``x @ W_ih + b_ih``).  When present,
        :func:`rnnlab.unroll` applies it to the whole ``[..., T, F]`` sequence as one
        large matmul outside the time loop and then calls ``step_projected``.
      step_projected: ``step_projected(params, carry, px_t) -> (carry, y)``; must
        satisfy ``step(p, c, x) == step_projected(p, c, project_inputs(p, x))``.
      hyperparameters: the factory's arguments, for records and diagnostics
        (e.g. ``activation`` for the Pascanu bound).
      recurrent_weight: optional ``recurrent_weight(params) -> [H, k*H]``, the
        matrix multiplying ``h_{t-1}``, used by spectrum diagnostics.
      recurrence: optional :class:`Recurrence` (``hidden``,
        ``pointwise``, ``additive``): declares that a step is ``h_{t-1} @ W_hh + b_hh``
        followed by a pointwise part, which gives the cell :func:`rnnlab.unroll`'s
        fast path (:mod:`rnnlab.fused`).  The built-in cells declare theirs.

    A cell is deliberately *not* a pytree: pass it to ``jax.jit`` through a
    closure or as a static argument.  Equality is identity.
    """

    name: str
    hidden_size: int
    init: Callable[[jax.Array, int], Params]
    initial_carry: Callable[..., Carry]
    step: Callable[[Params, Carry, jax.Array], tuple[Carry, jax.Array]]
    input_size: Callable[[Params], int]
    project_inputs: Callable[[Params, jax.Array], jax.Array] | None = None
    step_projected: Callable[[Params, Carry, jax.Array], tuple[Carry, jax.Array]] | None = None
    recurrent_weight: Callable[[Params], jax.Array] | None = None
    hyperparameters: dict = dataclasses.field(default_factory=dict)
    recurrence: Recurrence | None = None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"rnnlab.cells.{self.name}({args})"


def _positive_int(value, argument: str) -> int:
    """Accepts Python and NumPy integers (not bools); sizes fix shapes, so no tracers."""
    try:
        if isinstance(value, bool):
            raise TypeError
        size = operator.index(value)
    except TypeError:
        size = None
    if size is None or size < 1:
        raise ValueError(f"{argument} must be a positive int, got {value!r}")
    return size


def check_hidden_size(hidden_size) -> int:
    return _positive_int(hidden_size, "hidden_size")


def check_input_size(input_size) -> int:
    return _positive_int(input_size, "input_size")
