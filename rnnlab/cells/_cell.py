"""The cell record: a small bundle of pure functions, in the spirit of optax.

A cell needs three functions, ``init``, ``initial_carry`` and ``step``; everything
else is an optional declaration that unlocks something:

- ``output``: how the step's output ``y_t`` is read from the new carry.  Diagnostics
  need it to follow ``carry_t -> y_t -> L``; cells whose carry is one array equal
  to ``y`` may omit it.
- ``dense``: a :class:`DenseRecurrence`, the structure of the fused (cuDNN-style)
  path of :mod:`rnnlab.fused`.
- ``linear``: a :class:`LinearRecurrence`, the structure of the parallel
  (associative-scan) path of :mod:`rnnlab.parallel`.
- ``input_size``, ``recurrent_weight``, ``hyperparameters``, ``exports``: metadata
  for input validation, spectrum diagnostics, records, and weight interop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax

from rnnlab import _checks

Params = Any  # a pytree of arrays
Carry = Any  # a pytree of arrays with leading batch dimensions


class DenseRecurrence(NamedTuple):
    """The structure of a dense gated step, which gives a cell the fused path.

    The cell's params are ``{weight_ih [F, G*H], bias_ih [G*H], weight_hh [H', G*H],
    bias_hh [G*H]}`` and its step is::

        px_t = x_t @ weight_ih + bias_ih
        hh_t = hidden(carry) @ weight_hh + bias_hh
        carry_t, y_t = pointwise(px_t, hh_t, carry_{t-1})

    Attributes:
      hidden: ``hidden(carry) -> h: [..., H']``, the part of the carry that multiplies
        ``weight_hh`` (``carry.h`` for the LSTM).  Must be linear (a selection).
      pointwise: ``pointwise(px_t, hh_t, carry) -> (carry, y)``: everything in the
        step except the two matmuls.
      additive: ``True`` when ``pointwise`` depends on ``px_t + hh_t`` only (LSTM,
        RNN), so one gate gradient serves both matmuls.
      pointwise_vjp: optional hand-written ``jax.vjp`` of ``pointwise`` for an additive
        cell: ``pointwise_vjp(s_t, carry) -> ((carry, y), pullback)`` with
        ``s_t = px_t + hh_t`` and ``pullback((d_carry, dy)) -> (d_s, d_carry)`` a
        :class:`jax.tree_util.Partial` whose leaves are the residuals kept per step.
    """

    hidden: Callable[[Carry], jax.Array]
    pointwise: Callable[[jax.Array, jax.Array, Carry], tuple[Carry, jax.Array]]
    additive: bool
    pointwise_vjp: Callable | None = None


class LinearRecurrence(NamedTuple):
    """The structure of a diagonal linear recurrence, which gives a cell the parallel path.

    The carry is one array ``h: [..., N]`` (real or complex) and the step is::

        a_t, b_t = coefficients(params, x_t)        # broadcast to [..., N], from x_t only
        h_t = a_t * h_{t-1} + b_t
        y_t = output(params, h_t, x_t)              # the cell's ``output``

    so a whole sequence is one ``jax.lax.associative_scan`` with the operator
    ``(a_i, b_i) o (a_j, b_j) = (a_j a_i, a_j b_i + b_j)``.

    Attributes:
      coefficients: ``coefficients(params, xs) -> (a, b)``; ``xs: [..., F]`` with any
        leading axes (the parallel path passes a whole ``[..., T, F]`` sequence).
      log_space: ``coefficients`` returns ``(log a, log b)`` of positive ``a, b``, and
        the scan runs in log space with ``logaddexp`` (Feng et al. 2024's minGRU and
        minLSTM).  The carry ``h`` itself stays in linear space and must be >= 0.
      units: optional ``units(params) -> pytree of int arrays shaped like params``: for
        each parameter element, the unit ``n`` whose ``a_t[n]`` or ``b_t[n]`` it drives
        (the LRU's ``nu[n]`` and ``B[:, n]``; column ``j`` of minGRU's ``[F, 2H]`` weight
        drives unit ``j mod H``); output-only parameters may map to any unit.  ``-1``
        marks an element that drives several units (the RG-LRU's input projection).
        With it, :func:`rnnlab.gradients.diagonal_rtrl` computes exact RTRL in O(P)
        memory (Zucchet et al. 2023), O(H) per ``-1`` element.
    """

    coefficients: Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]
    log_space: bool = False
    units: Callable[[Params], Any] | None = None


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Cell:
    """An immutable record of pure functions describing one recurrent step.

    Only ``name``, ``hidden_size``, ``init``, ``initial_carry`` and ``step`` are
    required::

        cell = Cell(name="mine", hidden_size=H, init=init, initial_carry=initial_carry,
                    step=step)

    Attributes:
      name: a short name, e.g. ``"lstm"``; registered cells use their registry name.
      hidden_size: ``H``, the size of the output ``y: [..., H]`` of every step.
      init: ``init(key, input_size) -> params``, a pytree of arrays.
      initial_carry: ``initial_carry(batch_shape=()) -> carry``; leaves have shape
        ``[*batch_shape, ...]``.
      step: ``step(params, carry, x) -> (carry, y)`` with ``x: [..., F]`` and
        ``y: [..., H]``.  It must be a function of its arguments only (no Python side
        effects), and ``y`` must equal ``output(params, new_carry, x)``.
      output: optional ``output(params, carry, x) -> y``: the output as a function of
        the carry the step returns and the step's input.  Default: the carry itself,
        which needs a single-array carry.  Diagnostics differentiate through it, so
        ``||dL/dcarry_t||`` includes the path ``carry_t -> y_t -> L``; they check
        that it agrees with ``step`` and refuse to return numbers when it does not.
      input_size: optional ``input_size(params) -> F``, used to validate inputs.
      recurrent_weight: optional ``recurrent_weight(params) -> [H', G*H']``, the
        matrix multiplying the carry, for spectrum diagnostics.
      hyperparameters: the factory's arguments, for records and diagnostics.
      dense: optional :class:`DenseRecurrence` (the fused path of :mod:`rnnlab.fused`).
      linear: optional :class:`LinearRecurrence` (the parallel path of
        :mod:`rnnlab.parallel`).
      prepare: optional ``prepare(params) -> params``: work that depends on the params
        only, done once per sequence instead of once per step (e.g. the orthogonal cell's
        ``W = expm(A - A^T)``).  :func:`rnnlab.unroll` calls ``step`` with
        ``prepare(params)``, so ``step`` must accept both the raw and the prepared params.
      exports: optional facts for :mod:`rnnlab.interop`, e.g. ``{"torch": "LSTM"}``:
        the other frameworks' modules that compute exactly this cell.  A cell without
        an entry cannot be exported there.

    A cell is deliberately *not* a pytree: pass it to ``jax.jit`` through a closure or
    as a static argument.  Equality is identity.
    """

    name: str
    hidden_size: int
    init: Callable[[jax.Array, int], Params]
    initial_carry: Callable[..., Carry]
    step: Callable[[Params, Carry, jax.Array], tuple[Carry, jax.Array]]
    output: Callable[[Params, Carry, jax.Array], jax.Array] | None = None
    input_size: Callable[[Params], int] | None = None
    recurrent_weight: Callable[[Params], jax.Array] | None = None
    hyperparameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    dense: DenseRecurrence | None = None
    linear: LinearRecurrence | None = None
    prepare: Callable[[Params], Params] | None = None
    exports: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty str, got {self.name!r}")
        object.__setattr__(
            self, "hidden_size", _checks.positive_int("hidden_size", self.hidden_size)
        )
        for field in ("init", "initial_carry", "step"):
            if not callable(getattr(self, field)):
                raise ValueError(f"{field} must be callable, got {getattr(self, field)!r}")
        for field in ("output", "input_size", "recurrent_weight", "prepare"):
            value = getattr(self, field)
            if value is not None and not callable(value):
                raise ValueError(f"{field} must be callable or None, got {value!r}")
        if self.dense is not None and not isinstance(self.dense, DenseRecurrence):
            raise ValueError(f"dense must be a DenseRecurrence, got {type(self.dense).__name__}")
        if self.linear is not None and not isinstance(self.linear, LinearRecurrence):
            raise ValueError(f"linear must be a LinearRecurrence, got {type(self.linear).__name__}")
        object.__setattr__(self, "hyperparameters", dict(self.hyperparameters))
        object.__setattr__(self, "exports", dict(self.exports))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"rnnlab.cells.Cell({self.name}: {args})"

    def output_of(self, params: Params, carry: Carry, x: jax.Array) -> jax.Array:
        """``y = output(params, carry, x)``, or the carry itself when ``output`` is None.

        Raises:
          ValueError: when ``output`` is None and the carry is not a single array.
        """
        if self.output is not None:
            return self.output(params, carry, x)
        if not jax.tree_util.treedef_is_leaf(jax.tree.structure(carry)):
            raise ValueError(
                f"cell {self.name!r} has a pytree carry and no output "
                "function: build it with output=lambda params, carry, x: ... so that "
                "diagnostics know how y_t depends on carry_t"
            )
        return carry


def check_hidden_size(hidden_size) -> int:
    return _checks.positive_int("hidden_size", hidden_size)


def check_input_size(input_size) -> int:
    return _checks.positive_int("input_size", input_size)
