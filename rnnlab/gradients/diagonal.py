r"""Exact RTRL for element-wise linear recurrences (Zucchet et al. 2023).

For a recurrence ``h_t = a_t * h_{t-1} + b_t`` (element-wise; ``a_t, b_t`` functions of
the params and ``x_t`` only, real or complex), such as the LRU, minGRU and minLSTM, the
state's Jacobian ``D_t = diag(a_t)`` is diagonal.  If each recurrent parameter drives
one unit's ``a`` and ``b`` (the LRU's ``nu_u, theta_u, B[u, :]``; the columns of
minGRU's input projections), the sensitivity ``d h_t / d theta`` has one non-zero
entry per parameter, ``e_t[p] = d h_t[unit(p)] / d theta_p``, and exact RTRL is::

    e_t[p] = a_t[unit(p)] e_{t-1}[p] + d/d theta_p [a_t[unit(p)]] h_{t-1}[unit(p)]
             + d/d theta_p [b_t[unit(p)]]

O(P) memory and about two passes per step.  This is :mod:`rnnlab.gradients.snap`'s
update with ``D_t``'s diagonal read off the declaration, and for these cells nothing is
truncated: the gradient equals BPTT's.  Parameters that enter only the output (a
readout ``C``, a skip ``D``) get their gradient from the immediate term and keep a zero
trace; any unit may be declared for them.

Reference: N. Zucchet, R. Meier, S. Schug, A. Mujika, J. Sacramento, "Online learning of
long-range dependencies", NeurIPS 2023 (arXiv:2305.15947).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax

from rnnlab.cells import Cell
from rnnlab.gradients._base import Estimator, StepLoss
from rnnlab.gradients.forward import online_estimator
from rnnlab.gradients.snap import sparse_method

__all__ = ["LinearRecurrence", "diagonal_rtrl"]


class LinearRecurrence(NamedTuple):
    """The declaration an element-wise linear cell gives to get exact, cheap RTRL.

    The cell's carry is ``h: [..., H]`` (real or complex) and its step must equal::

        a, b = coefficients(params, x)       # each [..., H]
        h = a * h + b
        y = output(params, h, x)

    Attributes:
      coefficients: ``coefficients(params, x [..., F]) -> (a, b)``, each ``[..., H]``;
        also the operands of a parallel scan (``(a_i, b_i) o (a_j, b_j) =
        (a_j a_i, a_j b_i + b_j)``).
      output: ``output(params, h [..., H], x [..., F]) -> y [..., Y]``.
      units: ``units(params) -> pytree of int arrays`` of the params' structure and
        shapes: the unit whose ``a``/``b`` each parameter drives (any unit for a
        parameter of ``output`` only).
    """

    coefficients: Callable
    output: Callable
    units: Callable


def diagonal_rtrl(
    cell: Cell, step_loss: StepLoss, *, recurrence: LinearRecurrence | None = None
) -> Estimator:
    """Exact RTRL for an element-wise linear recurrence (Zucchet et al. 2023).

    Args:
      cell: the cell; its ``step`` runs the forward pass and must agree with
        ``recurrence``.
      step_loss: the per-example, per-step loss.
      recurrence: the cell's :class:`LinearRecurrence`; default the cell's own
        declaration (``cell.linear_recurrence``, once cells carry one).

    Raises:
      ValueError: when no declaration is given or found.
    """
    # TODO(core): read the declaration from a Cell field once the linear cells land.
    recurrence = recurrence if recurrence is not None else getattr(cell, "linear_recurrence", None)
    if not isinstance(recurrence, LinearRecurrence):
        raise ValueError(
            f"diagonal_rtrl needs the cell's element-wise linear recurrence "
            f"h_t = a_t * h_{{t-1}} + b_t; the {cell.name} cell declares none.  Pass "
            "recurrence=LinearRecurrence(coefficients, output, units), or use 'rtrl', "
            "'snap1' or 'uoro' for a nonlinear cell"
        )

    if len(jax.tree.leaves(jax.eval_shape(lambda: cell.initial_carry(())))) != 1:
        raise ValueError(
            f"diagonal_rtrl needs a carry that is the state h alone; the {cell.name} cell's "
            "carry has several leaves"
        )

    def diagonal(linearization, cell_params, carry, x):
        del linearization, carry
        return [[recurrence.coefficients(cell_params, x)[0]]]

    method = sparse_method(cell.hidden_size, recurrence.units, diagonal)
    return online_estimator("diagonal_rtrl", {}, cell, step_loss, method)
