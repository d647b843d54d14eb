"""Gated recurrent unit (Cho et al. 2014), torch's formulation."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab.cells import _dense
from rnnlab.cells._cell import Cell, check_hidden_size


def pointwise(px, hh, h):
    """Everything in a GRU step but ``hh = h @ W_hh + b_hh``: ``[..., 3H] -> [..., H]``."""
    x_r, x_z, x_n = jnp.split(px, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(hh, 3, axis=-1)
    r = jax.nn.sigmoid(x_r + h_r)
    z = jax.nn.sigmoid(x_z + h_z)
    n = jnp.tanh(x_n + r * h_n)
    h = (1.0 - z) * n + z * h
    return h, h


def _identity(h):
    return h


def gru(
    hidden_size: int,
    *,
    recurrent_init="uniform",
    recurrent_scale=1.0,
    input_init="uniform",
    bias_init="zeros",
    param_dtype=jnp.float32,
) -> Cell:
    r"""GRU with torch.nn.GRU's gate order ``(r, z, n)`` and equations::

        r = sigmoid(x W_ir + b_ir + h W_hr + b_hr)
        z = sigmoid(x W_iz + b_iz + h W_hz + b_hz)
        n = tanh(x W_in + b_in + r * (h W_hn + b_hn))
        h_t = (1 - z) * n + z * h_{t-1}

    The reset gate multiplies ``(h W_hn + b_hn)``, including ``b_hn``.  Flax
    nnx's ``GRUCell`` has no ``b_hn``; with ``b_hn = 0`` the two agree.

    Args:
      hidden_size: ``H``.
      recurrent_init: initializer of ``W_hh [H, 3H]``; default torch's uniform.
      recurrent_scale: multiplies ``W_hh`` after initialization.
      input_init: initializer of ``W_ih [F, 3H]``; default torch's uniform.
      bias_init: initializer of ``b_ih`` and ``b_hh``; default zeros.
      param_dtype: dtype of the parameters.

    Returns:
      A :class:`Cell` whose carry and output are ``h: [..., H]``.
    """
    hidden_size = check_hidden_size(hidden_size)
    init = _dense.make_init(
        hidden_size,
        3,
        input_init=input_init,
        recurrent_init=recurrent_init,
        bias_init=bias_init,
        recurrent_scale=recurrent_scale,
        param_dtype=param_dtype,
    )

    initial_carry = _dense.zeros(hidden_size, param_dtype)

    return _dense.make_cell(
        "gru",
        hidden_size,
        init=init,
        initial_carry=initial_carry,
        hidden=_identity,
        pointwise=pointwise,
        additive=False,
        exports={"torch": "GRU", "flax": "GRUCell"},
        hyperparameters=dict(
            hidden_size=hidden_size,
            recurrent_init=recurrent_init,
            recurrent_scale=recurrent_scale,
            input_init=input_init,
            bias_init=bias_init,
        ),
    )
