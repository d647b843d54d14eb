"""Coupled oscillatory RNN (Rusch & Mishra 2021): a damped, forced oscillator per unit."""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnlab import _checks
from rnnlab.cells import _dense
from rnnlab.cells._cell import Cell, check_hidden_size, check_input_size


class CoRNNCarry(NamedTuple):
    """The coRNN state: position ``y: [..., H]`` (the output) and velocity ``z: [..., H]``."""

    y: jax.Array
    z: jax.Array


def _hidden(carry: CoRNNCarry) -> jax.Array:
    return jnp.concatenate([carry.y, carry.z], axis=-1)


def _output(params, carry: CoRNNCarry, x):
    del params, x
    return carry.y


def cornn(
    hidden_size: int,
    *,
    dt=0.06,
    gamma=66.0,
    epsilon=15.0,
    param_dtype=jnp.float32,
) -> Cell:
    r"""coRNN: a network of controlled, damped nonlinear oscillators (Rusch & Mishra 2021)::

        z_n = z_{n-1} + dt * (tanh(y_{n-1} W + z_{n-1} Wz + x_n V + b) - gamma y_{n-1}
                              - epsilon z_{n-1})
        y_n = y_{n-1} + dt * z_n                           # y, z: [..., H]; output y_n

    the time discretization of ``y'' = tanh(W y + Wz y' + V x + b) - gamma y - epsilon y'``.
    This is the update of the authors' code (tk-rusch/coRNN), which damps with
    ``z_{n-1}``; the paper's eq. (3), as recalled, damps implicitly with ``z_n`` (an
    IMEX scheme).  The two agree to ``O(dt^2)``.

    Bound (the explicit scheme here, any weights and inputs): per unit,
    ``(y_n, z_n) = M (y_{n-1}, z_{n-1}) + s_n (dt^2, dt)`` with ``|s_n| < 1`` and
    ``M = [[1 - dt^2 gamma, dt (1 - dt epsilon)], [-dt gamma, 1 - dt epsilon]]``, so
    ``|y_n| <= sum_k |[M^k (dt^2, dt)]_0|``, finite when ``M``'s spectral radius is
    below 1 (at the defaults it is 0.72, and the bound is ``1/gamma``, the response to a
    saturated forcing).

    Parameters, in the dense layout of :mod:`rnnlab.cells._dense` (which gives the cell
    the fused path): ``weight_ih = V: [F, H]``, ``weight_hh = [W; Wz]: [2H, H]``
    (rows for ``y``, then ``z``), ``bias_ih, bias_hh: [H]``.  The authors' code has one
    ``nn.Linear(F + 2H, H)``: its init ``U(+-1/sqrt(F + 2H))`` is used for the weights
    and ``bias_ih``; ``bias_hh`` starts at 0, so ``b = bias_ih + bias_hh`` starts as in
    the code (the duplicate bias is trained twice as fast under Adam, as in torch's RNNs).

    Args:
      hidden_size: ``H``.
      dt: the time step ``dt > 0``.  Default 0.06: the authors' adding-task default.
      gamma: the restoring force ``gamma >= 0``; default 66 (adding task).
      epsilon: the damping ``epsilon >= 0``; default 15 (adding task).  The authors
        used ``dt = 0.076, gamma = 0.4, epsilon = 8`` for psMNIST.
        ``dt``, ``gamma`` and ``epsilon`` may be arrays: sweeps vmap over them, and
        they are differentiable on every path.
      param_dtype: dtype of the parameters and the carry.

    Returns:
      A :class:`Cell` with carry :class:`CoRNNCarry` and output ``y_n: [..., H]``.

    References:
      T. K. Rusch, S. Mishra, "Coupled Oscillatory Recurrent Neural Network (coRNN): An
      accurate and (gradient) stable architecture for learning long time dependencies",
      ICLR 2021.  arXiv:2010.00951.
    """
    hidden_size = check_hidden_size(hidden_size)
    _checks.hyperparameter("dt", dt, minimum=0.0, strict_minimum=True)
    _checks.hyperparameter("gamma", gamma, minimum=0.0)
    _checks.hyperparameter("epsilon", epsilon, minimum=0.0)

    def init(key, input_size):
        input_size = check_input_size(input_size)
        bound = 1.0 / math.sqrt(input_size + 2 * hidden_size)
        k_ih, k_hh, k_b = jax.random.split(key, 3)
        uniform = lambda k, shape: jax.random.uniform(k, shape, param_dtype, -bound, bound)  # noqa: E731
        return {
            "weight_ih": uniform(k_ih, (input_size, hidden_size)),
            "weight_hh": uniform(k_hh, (2 * hidden_size, hidden_size)),
            "bias_ih": uniform(k_b, (hidden_size,)),
            "bias_hh": jnp.zeros((hidden_size,), param_dtype),
        }

    def initial_carry(batch_shape=()):
        zeros = jnp.zeros((*tuple(batch_shape), hidden_size), param_dtype)
        return CoRNNCarry(y=zeros, z=zeros)

    def pointwise(px, hh, carry: CoRNNCarry):
        step, restore, damp = (jnp.asarray(v, param_dtype) for v in (dt, gamma, epsilon))
        force = jnp.tanh(px + hh) - restore * carry.y - damp * carry.z
        z = carry.z + step * force
        y = carry.y + step * z
        return CoRNNCarry(y=y, z=z), y

    cell = _dense.make_cell(
        "cornn",
        hidden_size,
        init=init,
        initial_carry=initial_carry,
        hidden=_hidden,
        pointwise=pointwise,
        additive=True,
        output=_output,
        hyperparameters=dict(hidden_size=hidden_size, dt=dt, gamma=gamma, epsilon=epsilon),
    )
    # weight_hh is [2H, H], not the square gate blocks the spectrum diagnostics read.
    return dataclasses.replace(cell, recurrent_weight=None)
