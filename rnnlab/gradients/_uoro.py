r"""Unbiased online recurrent optimization (Tallec & Ollivier 2017).

UORO keeps a rank-one estimate ``J_t ~ s~_t theta~_t^T`` of the sensitivity
``d s_t / d theta`` with ``E[s~_t theta~_t^T] = J_t``: O(S + P) memory per example and
the cost of about one forward and one backward step.  At each step, with fresh random
signs ``nu`` (``S`` entries, each +-1 with probability 1/2)::

    s~_t     = rho_0 D_t s~_{t-1} + rho_1 nu
    theta~_t = theta~_{t-1} / rho_0 + (nu^T I_t) / rho_1

with ``D_t s~`` one ``jvp`` of the step and ``nu^T I_t`` one ``vjp``.  The cross terms
have zero mean because ``E[nu] = 0`` and the scale ``rho_1`` is even in ``nu``, and
``E[nu nu^T] = 1``, so the estimate stays unbiased for any positive ``rho_0, rho_1``.
The variance-minimising choice (their Algorithm 1) is used::

    rho_0 = sqrt((|theta~_{t-1}| + eps) / (|D_t s~_{t-1}| + eps))
    rho_1 = sqrt((|nu^T I_t| + eps) / (|nu| + eps))

(``eps`` only keeps the first step, where both vectors are zero, finite).  The gradient
of step ``t`` is ``dl_t/dtheta + (c_t . s~_{t-1}) theta~_{t-1}`` (see
:mod:`rnnlab.gradients.forward`), unbiased by linearity.

Reference: C. Tallec and Y. Ollivier, "Unbiased Online Recurrent Optimization",
ICLR 2018 (arXiv:1702.05043, 2017).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnlab.cells import Cell
from rnnlab.gradients import _base
from rnnlab.gradients._base import Estimator, StepLoss
from rnnlab.gradients.forward import SensitivityMethod, online_estimator

__all__ = ["UOROTrace", "uoro"]


class UOROTrace(NamedTuple):
    """The rank-one factors of ``J ~ s~ theta~^T`` (one example).

    Attributes:
      state: ``s~``, shaped like the carry.
      params: ``theta~``, shaped like the cell's params.
    """

    state: Any
    params: Any


def uoro(cell: Cell, step_loss: StepLoss, *, epsilon: float = 1e-7) -> Estimator:
    """UORO of Tallec & Ollivier 2017: an unbiased rank-one estimate of RTRL.

    Args:
      cell: any cell with a real carry.
      step_loss: the per-example, per-step loss.
      epsilon: the ``eps`` of the scales ``rho_0, rho_1`` (any positive value keeps the
        estimate unbiased).

    ``init`` needs a ``key``: every example draws its own signs at every step, and
    ``state.key`` advances at every update.
    """
    if not (isinstance(epsilon, (int, float)) and epsilon > 0):
        raise ValueError(f"epsilon must be a positive number, got {epsilon!r}")

    def init(cell_params, carry):
        return UOROTrace(_base.tree_zeros_like(carry), _base.tree_zeros_like(cell_params))

    def contract(trace, cotangent, cell_params):
        del cell_params
        scale = _base.tree_vdot(cotangent, trace.state)
        return jax.tree.map(lambda t: scale.astype(t.dtype) * t, trace.params)

    def noise(key, carry, prefix):
        """The signs ``nu`` of every example and step, +-1 with probability 1/2."""
        leaves, treedef = jax.tree.flatten(carry)
        keys = jax.random.split(key, len(leaves))
        return treedef.unflatten(
            [
                jax.random.rademacher(k, (*prefix, *leaf.shape), leaf.dtype)
                for k, leaf in zip(keys, leaves, strict=True)
            ]
        )

    def propagate(trace, linearization, signs, cell_params, carry, x):
        del cell_params, carry, x
        forward, _ = linearization.push(linearization.zero_params, trace.state)
        immediate, _ = linearization.pull((signs, linearization.zero_output))
        rho0 = jnp.sqrt(
            (_base.tree_norm(trace.params) + epsilon) / (_base.tree_norm(forward) + epsilon)
        )
        rho1 = jnp.sqrt((_base.tree_norm(immediate) + epsilon) / (_base.tree_norm(signs) + epsilon))
        state = jax.tree.map(lambda f, s: rho0.astype(f.dtype) * f + rho1.astype(s.dtype) * s,
                             forward, signs)  # fmt: skip
        params = jax.tree.map(
            lambda p, i: p / rho0.astype(p.dtype) + i / rho1.astype(i.dtype),
            trace.params,
            immediate,
        )
        return UOROTrace(state, params)

    method = SensitivityMethod(init=init, contract=contract, propagate=propagate, noise=noise)
    return online_estimator("uoro", {"epsilon": epsilon}, cell, step_loss, method)
