r"""Exact RTRL for element-wise linear recurrences (Zucchet et al. 2023).

A cell that declares a :class:`rnnlab.cells.LinearRecurrence` steps
``h_t = a_t * h_{t-1} + b_t`` with ``a_t, b_t`` functions of the params and ``x_t`` only
(real or complex, or their logs for ``log_space`` cells such as minGRU and minLSTM), so
the state's Jacobian ``D_t = diag(a_t)`` is diagonal and exact RTRL is cheap.  The
declaration's ``units(params)`` says which unit each parameter element drives:

- an element ``p`` driving one unit ``u = unit(p)`` (the LRU's ``nu[u]``, ``B[:, u]``;
  column ``u`` of minGRU's input projections) has one non-zero sensitivity,
  ``e_t[p] = d h_t[u] / d theta_p``, and::

      e_t[p] = a_t[u] e_{t-1}[p] + I_t[p],   I_t[p] = d h_t[u] / d theta_p |_{h_{t-1}}

  O(P) memory; ``I_t`` of every such element is *one* ``vjp`` of the step;
- an element marked ``-1`` drives several units (the RG-LRU's input projection, which
  feeds every unit's gates): it keeps the whole column ``E_t[:, p] = d h_t / d theta_p``,
  ``E_t[n, p] = a_t[n] E_{t-1}[n, p] + d h_t[n] / d theta_p``: O(N) memory per element
  and one ``vjp`` per unit;
- elements that enter only the output (a readout ``C``, a skip ``D``) get their gradient
  from the immediate term; their trace stays zero whatever unit they are given.

Nothing is truncated, so the gradient equals BPTT's.  The forward pass, the loss and the
immediate gradients run through :mod:`rnnlab.gradients.forward` like every online
estimator; only the sensitivity update is read off the declaration.

Reference: N. Zucchet, R. Meier, S. Schug, A. Mujika, J. Sacramento, "Online learning of
long-range dependencies", NeurIPS 2023 (arXiv:2305.15947).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab.cells import Cell
from rnnlab.gradients._base import Estimator, StepLoss
from rnnlab.gradients.forward import SensitivityMethod, online_estimator
from rnnlab.gradients.snap import one_step_influence, unit_arrays

__all__ = ["SEVERAL_UNITS", "diagonal_rtrl"]

#: The unit of a parameter element that drives several units (a full sensitivity column).
SEVERAL_UNITS = -1


def _declaration(cell: Cell):
    linear = cell.linear
    if linear is None or linear.units is None:
        what = "no LinearRecurrence" if linear is None else "a LinearRecurrence without units"
        raise ValueError(
            f"diagonal_rtrl needs an element-wise linear recurrence h_t = a_t * h_(t-1) + b_t "
            f"and the unit each parameter drives; the {cell.name} cell declares {what}.  "
            "Declare linear=LinearRecurrence(coefficients, units=...) on the cell "
            "(rnnlab.cells.LinearRecurrence), or use 'rtrl', 'snap1' or 'uoro' for a "
            "nonlinear cell"
        )
    carry = jax.eval_shape(lambda: cell.initial_carry(()))
    if len(jax.tree.leaves(carry)) != 1 or jnp.ndim(jax.tree.leaves(carry)[0]) != 1:
        raise ValueError(
            f"diagonal_rtrl needs a carry that is the state h: [N] alone; the {cell.name} "
            f"cell's carry is {carry}"
        )
    return linear, jax.tree.leaves(carry)[0].shape[0]


def _split_units(units, cell_params, size: int):
    """``(sparse, dense)``: per leaf, the int unit array of a one-unit leaf or ``None``,
    and whether the leaf drives several units; checks shapes and ranges."""
    sparse, dense = [], []
    for unit in unit_arrays(units, cell_params, "linear.units(params)"):
        several = unit == SEVERAL_UNITS
        if several.any() and not several.all():
            raise ValueError(
                "linear.units(params) must mark a parameter array as driving several units "
                f"(-1) in all its elements or none, got a mix for shape {unit.shape}"
            )
        if not several.any() and unit.size and (unit.min() < 0 or unit.max() >= size):
            raise ValueError(f"linear.units must lie in [0, N) = [0, {size}) or be -1")
        dense.append(bool(several.any()))
        sparse.append(None if several.any() else unit)
    return sparse, dense


def diagonal_rtrl(cell: Cell, step_loss: StepLoss) -> Estimator:
    """Exact RTRL for a cell with a diagonal linear recurrence (Zucchet et al. 2023).

    Args:
      cell: a cell declaring ``linear=LinearRecurrence(coefficients, log_space, units)``
        (the LRU, minGRU, minLSTM and RG-LRU do); its carry is ``h: [..., N]``.
      step_loss: the per-example, per-step loss.

    Raises:
      ValueError: for a cell without ``linear`` or without ``linear.units`` (naming
        the alternatives ``rtrl``, ``snap1`` and ``uoro``), a carry that is not one
        ``[N]`` array, or units of the wrong shape or range (at ``init``).
    """
    linear, size = _declaration(cell)

    def leaves(tree):
        return jax.tree.leaves(tree)

    def init(cell_params, carry):
        sparse, dense = _split_units(linear.units(cell_params), cell_params, size)
        treedef = jax.tree.structure(cell_params)
        return treedef.unflatten(
            [jnp.zeros(((size,) if several else ()) + jnp.shape(p), carry.dtype)
             for p, several in zip(leaves(cell_params), dense, strict=True)]
        )  # fmt: skip

    def contract(trace, cotangent, cell_params):
        sparse, _ = _split_units(linear.units(cell_params), cell_params, size)
        grads = []
        for sensitivity, unit, p in zip(leaves(trace), sparse, leaves(cell_params), strict=True):
            if unit is None:  # E [N, *shape]: sum_n c[n] E[n, p]
                product = jnp.tensordot(cotangent, sensitivity, axes=(0, 0))
            else:
                product = cotangent[unit] * sensitivity
            grads.append(jnp.real(product).astype(p.dtype))
        return jax.tree.structure(cell_params).unflatten(grads)

    def propagate(trace, linearization, noise, cell_params, carry, x):
        del noise
        sparse, dense = _split_units(linear.units(cell_params), cell_params, size)
        a = linear.coefficients(cell_params, x)[0]
        a = jnp.exp(a) if linear.log_space else a
        a = jnp.broadcast_to(a, carry.shape).astype(carry.dtype)
        # sum_n d h_t[n] / d theta_p: exactly the one entry kept for a one-unit element.
        summed = leaves(one_step_influence(linearization, carry, 0))
        columns = leaves(_influence_columns(linearization, carry)) if any(dense) else None
        new = []
        for index, (sensitivity, unit) in enumerate(zip(leaves(trace), sparse, strict=True)):
            if unit is None:
                scale = a.reshape(a.shape + (1,) * (sensitivity.ndim - 1))
                new.append(scale * sensitivity + columns[index])
            else:
                new.append(a[unit] * sensitivity + summed[index].astype(sensitivity.dtype))
        return jax.tree.structure(trace).unflatten(new)

    method = SensitivityMethod(init=init, contract=contract, propagate=propagate)
    return online_estimator("diagonal_rtrl", {}, cell, step_loss, method)


def _influence_columns(linearization, carry):
    """``d h_t[n] / d theta`` for every unit ``n``: leaves ``[N, *param_shape]`` (complex
    for a complex carry), one ``vjp`` per unit (two for a complex carry)."""

    def pull(cotangent):
        return linearization.pull((cotangent, linearization.zero_output))[0]

    basis = jnp.eye(carry.shape[0], dtype=carry.dtype)
    real = jax.vmap(pull)(basis)
    if not jnp.iscomplexobj(carry):
        return real
    # JAX's vjp of a real parameter returns Re(ct . J): ct = 1 gives Re J, ct = i gives -Im J.
    imaginary = jax.vmap(pull)(1j * basis)
    return jax.tree.map(
        lambda r, i: r.astype(carry.dtype) - 1j * i.astype(carry.dtype), real, imaginary
    )
