"""Long Expressive Memory (Rusch, Mishra, Erichson & Mahoney 2022): multiscale gated ODE cell."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnlab import _checks
from rnnlab.cells import _dense
from rnnlab.cells._cell import Cell, check_hidden_size, check_input_size


class LEMCarry(NamedTuple):
    """The LEM state: ``y: [..., H]`` (the output) and ``z: [..., H]``."""

    y: jax.Array
    z: jax.Array


def _output(params, carry: LEMCarry, x):
    del params, x
    return carry.y


def lem(hidden_size: int, *, dt=0.0242, param_dtype=jnp.float32) -> Cell:
    r"""LEM: two coupled ODEs whose time steps are learned per unit and per step::

        dt_n     = dt * sigmoid(y_{n-1} W_1 + x_n V_1 + b_1)         # multiscale steps
        dtbar_n  = dt * sigmoid(y_{n-1} W_2 + x_n V_2 + b_2)
        z_n = (1 - dt_n) * z_{n-1} + dt_n * tanh(y_{n-1} W_z + x_n V_z + b_z)
        y_n = (1 - dtbar_n) * y_{n-1} + dtbar_n * tanh(z_n W_y + x_n V_y + b_y)

    with ``y, z: [..., H]`` and output ``y_n`` (Rusch et al. 2022, eq. 3; the authors'
    code, tk-rusch/LEM, computes the same with ``ms_dt = dt_n``, ``ms_dt_bar =
    dtbar_n``).  Note ``y_n`` reads the *new* ``z_n``.

    Bound: with ``0 < dt <= 1`` both updates are convex combinations of the previous
    value and a ``tanh`` in ``(-1, 1)``, so ``max|z_n| <= max(max|z_0|, 1)`` and
    ``max|y_n| <= max(max|y_0|, 1)`` for every ``n``, whatever the weights and inputs.

    Parameters follow the authors' three ``nn.Linear`` layers, transposed to ``x @ W``:

    - ``weight_ih: [F, 4H]``, ``bias_ih: [4H]``: blocks ``(V_2, V_1, V_y, V_z)``;
    - ``weight_hh: [H, 3H]``, ``bias_hh: [3H]``: blocks ``(W_2, W_1, W_z)``;
    - ``weight_zy = W_y: [H, H]``, ``bias_zy: [H]``;

    so ``b_1 = bias_ih[1] + bias_hh[1]`` and so on, as in the code.  Every weight and
    bias starts ``U(+-1/sqrt(H))``, the code's init.

    Args:
      hidden_size: ``H``.
      dt: the largest time step, ``0 < dt <= 1`` (the bound above needs ``dt <= 1``).
        Default 0.0242: the authors' adding-task default (their code uses 0.31 for
        psMNIST and 1.0 as the model's default).  May be an array (sweeps).
      param_dtype: dtype of the parameters and the carry.

    Returns:
      A :class:`Cell` with carry :class:`LEMCarry` and output ``y_n: [..., H]``.

    References:
      T. K. Rusch, S. Mishra, N. B. Erichson, M. W. Mahoney, "Long Expressive Memory for
      Sequence Modeling", ICLR 2022.  arXiv:2110.04744.
    """
    hidden_size = check_hidden_size(hidden_size)
    _checks.hyperparameter("dt", dt, minimum=0.0, maximum=1.0, strict_minimum=True)
    bound = 1.0 / math.sqrt(hidden_size)
    shapes = lambda f: {  # noqa: E731
        "weight_ih": (f, 4 * hidden_size),
        "bias_ih": (4 * hidden_size,),
        "weight_hh": (hidden_size, 3 * hidden_size),
        "bias_hh": (3 * hidden_size,),
        "weight_zy": (hidden_size, hidden_size),
        "bias_zy": (hidden_size,),
    }

    def init(key, input_size):
        layout = shapes(check_input_size(input_size))
        keys = jax.random.split(key, len(layout))
        return {
            name: jax.random.uniform(k, shape, param_dtype, -bound, bound)
            for k, (name, shape) in zip(keys, layout.items(), strict=True)
        }

    def initial_carry(batch_shape=()):
        zeros = jnp.zeros((*tuple(batch_shape), hidden_size), param_dtype)
        return LEMCarry(y=zeros, z=zeros)

    def step(params, carry: LEMCarry, x):
        scale = jnp.asarray(dt, param_dtype)
        px_bar, px_dt, px_y, px_z = jnp.split(
            x @ params["weight_ih"] + params["bias_ih"], 4, axis=-1
        )
        hh_bar, hh_dt, hh_z = jnp.split(
            carry.y @ params["weight_hh"] + params["bias_hh"], 3, axis=-1
        )
        dt_bar = scale * jax.nn.sigmoid(px_bar + hh_bar)
        dt_z = scale * jax.nn.sigmoid(px_dt + hh_dt)
        z = (1.0 - dt_z) * carry.z + dt_z * jnp.tanh(px_z + hh_z)
        candidate = jnp.tanh(z @ params["weight_zy"] + params["bias_zy"] + px_y)
        y = (1.0 - dt_bar) * carry.y + dt_bar * candidate
        return LEMCarry(y=y, z=z), y

    return Cell(
        name="lem",
        hidden_size=hidden_size,
        init=init,
        initial_carry=initial_carry,
        step=step,
        output=_output,
        input_size=_dense.input_size,
        hyperparameters=dict(hidden_size=hidden_size, dt=dt),
    )
