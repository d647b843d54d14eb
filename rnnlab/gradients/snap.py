r"""SnAp-1 (Menick et al. 2020): the sensitivity entries a parameter touches in one step.

The carry is a pytree of ``L`` leaves, each ``[H]`` per example (``h``; ``h`` and ``c``
for the LSTM): unit ``u`` owns entry ``u`` of every leaf.  Each parameter ``p`` drives
one unit, ``unit(p)``, in one step: for the dense layout of the built-in cells
(``W_ih [F, G*H]``, ``W_hh [H, G*H]``, biases ``[G*H]``) column ``j`` feeds gate
``j // H`` of unit ``j mod H``.  SnAp-1 keeps, for every parameter, only the
sensitivities of its own unit's entries, ``T_l[p] = d s_l[unit(p)] / d theta_p``: the
trace has the shape of the params once per carry leaf, O(L P) memory, like the
parameters themselves.  The update is ``J_t = (D_t J_{t-1} + I_t)`` restricted to that
pattern, which with a sparse ``J_{t-1}`` reads::

    T_l[p] <- I_l[p] + sum_l' D_t[(l, u), (l', u)] T_l'[p],   u = unit(p)

- The one-step influence ``I_l[p] = d s_l[unit(p)] / d theta_p`` is *one* ``vjp`` of the
  step per leaf, with the cotangent 1 on every entry of leaf ``l``: it returns
  ``sum_u d s_l[u] / d theta_p``, and since ``theta_p`` reaches only ``unit(p)`` in one
  step, that sum is the one entry kept.
- The diagonal blocks ``D_t[(l, u), (l', u)]`` of the step's Jacobian come from ``S``
  ``jvp`` s (vmapped), one per carry entry.  Per step: ``L`` reverse and ``S`` forward
  passes, against ``S`` and ``P`` for RTRL.

The pattern is per unit: for the LSTM it keeps ``c_u`` for the output-gate parameters
too, whose immediate influence on ``c_u`` is zero (Menick et al.'s pattern is that of
``I_t`` entry by entry); for one-leaf carries (tanh RNN, GRU) the two agree.  For an
element-wise recurrence (``D_t`` diagonal) nothing is dropped, so SnAp-1 is exact:
:func:`rnnlab.gradients.diagonal_rtrl` is this update with ``D_t``'s diagonal read off
the cell's declaration instead of ``S`` ``jvp`` s.

Reference: J. Menick, E. Elsen, U. Evci, S. Osindero, K. Simonyan, A. Graves,
"Practical Real Time Recurrent Learning with a Sparse Approximation", ICLR 2021
(arXiv:2006.07232, 2020).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from rnnlab.cells import Cell
from rnnlab.gradients import _base
from rnnlab.gradients._base import Estimator, StepLoss
from rnnlab.gradients.forward import Linearization, SensitivityMethod, online_estimator

__all__ = ["dense_units", "snap1"]

#: ``units(cell_params) -> pytree of int arrays``, one per parameter leaf and of its shape:
#: the unit each parameter drives in one step.
Units = Callable


def dense_units(cell_params, hidden_size: int):
    """The units of the dense layout: the last axis of every parameter, ``G*H`` columns,
    maps column ``j`` to unit ``j mod H`` (``W_ih [F, G*H]``, ``W_hh [H, G*H]``, biases).

    Raises:
      ValueError: for a parameter whose last axis is not a multiple of ``H``, naming it
        and asking for an explicit ``units``.
    """
    units = []
    leaves, treedef = jax.tree_util.tree_flatten_with_path(cell_params)
    for path, leaf in leaves:
        shape = jnp.shape(leaf)
        if not shape or shape[-1] % hidden_size:
            raise ValueError(
                f"cannot tell which unit parameter {jax.tree_util.keystr(path)} of shape "
                f"{shape} drives: the default assumes the dense layout, where the last axis "
                f"has G*H columns and column j drives unit j mod H (H={hidden_size}); pass "
                "units=lambda params: ... giving each parameter's unit"
            )
        units.append(np.broadcast_to(np.arange(shape[-1]) % hidden_size, shape))
    return treedef.unflatten(units)


def unit_arrays(units, cell_params, name: str = "units(params)") -> list[np.ndarray]:
    """The leaves of ``units`` as int arrays, checked to have the structure of
    ``cell_params`` and, leaf by leaf, its shapes (``name`` says whose units, in errors)."""
    if jax.tree.structure(units) != jax.tree.structure(cell_params):
        raise ValueError(f"{name} must have the structure of the cell's params")
    arrays = []
    for unit, leaf in zip(jax.tree.leaves(units), jax.tree.leaves(cell_params), strict=True):
        unit = np.asarray(unit)
        if unit.shape != jnp.shape(leaf) or not np.issubdtype(unit.dtype, np.integer):
            raise ValueError(
                f"{name} must give an int array of each parameter's shape, got "
                f"{unit.dtype} {unit.shape} for a parameter of shape {jnp.shape(leaf)}"
            )
        arrays.append(unit)
    return arrays


def _check_units(units, cell_params, hidden_size: int) -> None:
    for unit in unit_arrays(units, cell_params):
        if unit.size and (unit.min() < 0 or unit.max() >= hidden_size):
            raise ValueError(f"units must lie in [0, H) = [0, {hidden_size})")


def _gather(vector, units):
    """``vector [H]`` read at each parameter's unit: a pytree shaped like the params."""
    return jax.tree.map(lambda u: vector[u], units)


def one_step_influence(linearization: Linearization, carry, leaf_index: int):
    """``I_l[p] = sum_u d s_l[u] / d theta_p`` for carry leaf ``l``: one ``vjp``.

    For a complex leaf, JAX's ``vjp`` of a real parameter returns ``Re(ct . J)``, so the
    cotangents 1 and i give the real part and minus the imaginary part.
    """
    leaves, treedef = jax.tree.flatten(carry)

    def pull(value):
        cotangent = [
            jnp.full_like(leaf, value) if i == leaf_index else jnp.zeros_like(leaf)
            for i, leaf in enumerate(leaves)
        ]
        return linearization.pull((treedef.unflatten(cotangent), linearization.zero_output))[0]

    real = pull(1)
    if not jnp.iscomplexobj(leaves[leaf_index]):
        return real
    dtype = leaves[leaf_index].dtype
    return jax.tree.map(lambda r, i: r.astype(dtype) - 1j * i.astype(dtype), real, pull(1j))


def jacobian_diagonal_blocks(linearization: Linearization, carry):
    """``blocks[l][l'] [H] = d s_t[l][u] / d s_{t-1}[l'][u]`` from ``S`` ``jvp`` s."""
    flat, unravel = ravel_pytree(carry)

    def column(unit_vector):
        d_carry, _ = linearization.push(linearization.zero_params, unravel(unit_vector))
        return jax.tree.leaves(d_carry)

    columns = jax.vmap(column)(jnp.eye(flat.size, dtype=flat.dtype))  # l: [S, H]
    hidden = columns[0].shape[-1]
    index = jnp.arange(hidden)
    return [
        [column[source * hidden + index, index] for source in range(len(columns))]
        for column in columns
    ]


def sparse_method(hidden_size: int, units: Units, diagonal: Callable) -> SensitivityMethod:
    """The SnAp-1 update with ``diagonal(linearization, cell_params, carry, x)`` giving the
    diagonal blocks ``[l][l'] -> [H]`` of ``D_t`` (shared by snap1 and diagonal RTRL)."""

    def init(cell_params, carry):
        for leaf in jax.tree.leaves(carry):
            if leaf.shape != (hidden_size,):
                raise ValueError(
                    f"the carry's leaves must each be [H] = [{hidden_size}] per example (one "
                    f"entry per unit), got a leaf of shape {leaf.shape}"
                )
        _check_units(units(cell_params), cell_params, hidden_size)
        return tuple(
            jax.tree.map(lambda p, leaf=leaf: jnp.zeros(p.shape, leaf.dtype), cell_params)
            for leaf in jax.tree.leaves(carry)
        )

    def contract(trace, cotangent, cell_params):
        owners = units(cell_params)
        total = _base.tree_zeros_like(cell_params)
        for c, sensitivity in zip(jax.tree.leaves(cotangent), trace, strict=True):
            product = jax.tree.map(
                lambda t, c_u, p: jnp.real(c_u * t).astype(p.dtype),
                sensitivity,
                _gather(c, owners),
                cell_params,
            )
            total = _base.tree_add(total, product)
        return total

    def propagate(trace, linearization, noise, cell_params, carry, x):
        del noise
        owners = units(cell_params)
        blocks = diagonal(linearization, cell_params, carry, x)
        new_trace = []
        for target in range(len(trace)):
            sensitivity = one_step_influence(linearization, carry, target)
            for source, previous in enumerate(trace):
                factor = _gather(blocks[target][source], owners)
                sensitivity = jax.tree.map(lambda s, f, t: s + f * t, sensitivity, factor, previous)
            new_trace.append(sensitivity)
        return tuple(new_trace)

    return SensitivityMethod(init=init, contract=contract, propagate=propagate)


def snap1(cell: Cell, step_loss: StepLoss, *, units: Units | None = None) -> Estimator:
    """SnAp-1 of Menick et al. 2020 (see the module docstring for the exact update).

    Args:
      cell: a cell whose carry leaves are ``[..., H]`` (one entry per unit).
      step_loss: the per-example, per-step loss.
      units: ``units(cell_params)``, the unit each parameter drives; default
        :func:`dense_units` (the built-in cells' layout).

    Raises:
      ValueError (at ``init``): for a parameter the default cannot assign to a unit, or
        carry leaves that are not ``[H]`` per example.
    """
    hidden = cell.hidden_size
    owners = units if units is not None else (lambda params: dense_units(params, hidden))

    def diagonal(linearization, cell_params, carry, x):
        del cell_params, x
        return jacobian_diagonal_blocks(linearization, carry)

    method = sparse_method(hidden, owners, diagonal)
    return online_estimator("snap1", {}, cell, step_loss, method)
