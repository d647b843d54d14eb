"""Long short-term memory cell (Hochreiter & Schmidhuber 1997; Gers et al. 2000)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnlab.cells import _dense
from rnnlab.cells._cell import Cell, check_hidden_size


class LSTMCarry(NamedTuple):
    """The LSTM state: hidden ``h: [..., H]`` and cell ``c: [..., H]``."""

    h: jax.Array
    c: jax.Array


def pointwise(px, hh, carry: LSTMCarry):
    """Everything in an LSTM step but ``hh = h @ W_hh + b_hh``: gates ``[..., 4H]``."""
    i, f, g, o = jnp.split(px + hh, 4, axis=-1)
    c = jax.nn.sigmoid(f) * carry.c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return LSTMCarry(h=h, c=c), h


def pointwise_vjp(s, carry: LSTMCarry):
    """``jax.vjp`` of :func:`pointwise` at ``s = px + hh``, with compact residuals.

    ``jax.vjp`` keeps eleven ``[..., H]`` residuals per step; :mod:`rnnlab.fused`
    stacks them over time, one buffer write each, which dominated the forward.  This
    keeps the gate activations ``[i, f, g, o]: [..., 4H]`` and ``c_{t-1}``, and the
    pullback recomputes ``c_t = f c_{t-1} + i g`` (bit-identical to the forward's)::

        dh = dh_t + dy_t;  dc = dc_t + dh * o * (1 - tanh(c_t)^2)
        ds = [dc g i (1 - i), dc c_{t-1} f (1 - f), dc i (1 - g^2), dh tanh(c_t) o (1 - o)]
        dc_{t-1} = dc f
    """
    i, f, g, o = jnp.split(s, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    c = f * carry.c + i * g
    h = o * jnp.tanh(c)
    gates = jnp.concatenate([i, f, g, o], axis=-1)
    return (LSTMCarry(h=h, c=c), h), jax.tree_util.Partial(_pullback, gates, carry.c)


def _pullback(gates, c_prev, cotangents):
    d_carry, dy = cotangents
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    tanh_c = jnp.tanh(f * c_prev + i * g)
    dh = d_carry.h + dy
    dc = d_carry.c + dh * o * (1.0 - tanh_c * tanh_c)
    ds = jnp.concatenate(
        [
            dc * g * i * (1.0 - i),
            dc * c_prev * f * (1.0 - f),
            dc * i * (1.0 - g * g),
            dh * tanh_c * o * (1.0 - o),
        ],
        axis=-1,
    )
    return ds, LSTMCarry(h=jnp.zeros_like(dh), c=dc * f)


def _hidden(carry: LSTMCarry):
    return carry.h


def _output(params, carry: LSTMCarry, x):
    del params, x
    return carry.h


def lstm(
    hidden_size: int,
    *,
    forget_bias=1.0,
    recurrent_init="uniform",
    recurrent_scale=1.0,
    input_init="uniform",
    bias_init="zeros",
    param_dtype=jnp.float32,
) -> Cell:
    r"""LSTM with torch.nn.LSTM's gate order ``(i, f, g, o)`` and equations::

        [i, f, g, o] = x_t W_ih + b_ih + h_{t-1} W_hh + b_hh
        i, f, o = sigmoid(i), sigmoid(f), sigmoid(o);  g = tanh(g)
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)

    With ``f = 1`` and ``i = 0`` the cell state carries the error unchanged: the
    constant error carousel of Hochreiter & Schmidhuber 1997.

    Args:
      hidden_size: ``H``.
      forget_bias: added to the forget-gate slice of ``b_ih`` after
        initialization.  The default 1.0 follows Gers et al. 2000 and Jozefowicz
        et al. 2015 (torch uses 0 plus its uniform bias init).  May be an array.
      recurrent_init: initializer of ``W_hh [H, 4H]``; default torch's
        ``U(+-1/sqrt(H))``; ``"orthogonal"`` / ``"identity"`` act per gate block.
      recurrent_scale: multiplies ``W_hh`` after initialization.
      input_init: initializer of ``W_ih [F, 4H]``; default torch's uniform.
      bias_init: initializer of ``b_ih`` and ``b_hh``; default zeros (use
        ``"uniform"`` for torch's exact default).
      param_dtype: dtype of the parameters.

    Returns:
      A :class:`Cell` with carry :class:`LSTMCarry` and output ``y = h_t``.
    """
    hidden_size = check_hidden_size(hidden_size)
    base_init = _dense.make_init(
        hidden_size,
        4,
        input_init=input_init,
        recurrent_init=recurrent_init,
        bias_init=bias_init,
        recurrent_scale=recurrent_scale,
        param_dtype=param_dtype,
    )

    def init(key, input_size):
        params = base_init(key, input_size)
        bias = params["bias_ih"]
        forget = bias[hidden_size : 2 * hidden_size] + jnp.asarray(forget_bias, param_dtype)
        params["bias_ih"] = bias.at[hidden_size : 2 * hidden_size].set(forget)
        return params

    def initial_carry(batch_shape=()):
        zeros = jnp.zeros((*tuple(batch_shape), hidden_size), param_dtype)
        return LSTMCarry(h=zeros, c=zeros)

    return _dense.make_cell(
        "lstm",
        hidden_size,
        init=init,
        initial_carry=initial_carry,
        hidden=_hidden,
        pointwise=pointwise,
        additive=True,
        pointwise_vjp=pointwise_vjp,
        output=_output,
        exports={"torch": "LSTM", "flax": "LSTMCell"},
        hyperparameters=dict(
            hidden_size=hidden_size,
            forget_bias=forget_bias,
            recurrent_init=recurrent_init,
            recurrent_scale=recurrent_scale,
            input_init=input_init,
            bias_init=bias_init,
        ),
    )
