"""Shared parameter layout of the dense gated cells: ``x @ W_ih + b_ih`` and ``h @ W_hh + b_hh``.

Layout (jax convention ``x @ W``; torch stores the transposes):

- ``weight_ih``: ``[F, G*H]``, ``bias_ih``: ``[G*H]``
- ``weight_hh``: ``[H, G*H]``, ``bias_hh``: ``[G*H]``

where ``G`` is the number of gates, stacked in torch's order.  Keeping torch's
two biases makes weight import/export exact (the GRU needs ``b_hn`` apart).

A cell in this layout is defined by its pointwise part alone (:func:`make_cell`):
the step, the generic scan and the fused path of :mod:`rnnlab.fused` all run that
one definition.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab import initializers
from rnnlab.cells._cell import Cell, DenseRecurrence, check_input_size


def make_init(
    hidden_size: int,
    gates: int,
    *,
    input_init,
    recurrent_init,
    bias_init,
    recurrent_scale,
    param_dtype,
):
    """Returns ``init(key, input_size) -> params`` for the layout above.

    Names are resolved eagerly so that a bad name fails when the cell is built.
    ``recurrent_scale`` may be a traced array (sweeps vmap over it).
    """
    input_fn = initializers.resolve(input_init, hidden_size, argument="input_init")
    recurrent_fn = initializers.resolve(recurrent_init, hidden_size, argument="recurrent_init")
    bias_fn = initializers.resolve(bias_init, hidden_size, argument="bias_init")
    width = gates * hidden_size

    def init(key: jax.Array, input_size: int) -> dict:
        input_size = check_input_size(input_size)
        k_ih, k_hh, k_bih, k_bhh = jax.random.split(key, 4)
        weight_hh = recurrent_fn(k_hh, (hidden_size, width), param_dtype)
        return {
            "weight_ih": input_fn(k_ih, (input_size, width), param_dtype),
            "weight_hh": (jnp.asarray(recurrent_scale, param_dtype) * weight_hh).astype(
                param_dtype
            ),
            "bias_ih": bias_fn(k_bih, (width,), param_dtype),
            "bias_hh": bias_fn(k_bhh, (width,), param_dtype),
        }

    return init


def input_size(params: dict) -> int:
    return params["weight_ih"].shape[-2]


def recurrent_weight(params: dict) -> jax.Array:
    return params["weight_hh"]


def zeros(hidden_size: int, param_dtype):
    """``initial_carry(batch_shape=()) -> zeros [*batch_shape, H]``."""

    def initial_carry(batch_shape=()):
        return jnp.zeros((*tuple(batch_shape), hidden_size), param_dtype)

    return initial_carry


def make_cell(
    name: str,
    hidden_size: int,
    *,
    init,
    initial_carry,
    hidden,
    pointwise,
    additive: bool,
    pointwise_vjp=None,
    output=None,
    hyperparameters,
    exports=None,
) -> Cell:
    """A :class:`Cell` in this layout, defined by its pointwise part.

    The step is ``carry_t, y_t = pointwise(x_t @ W_ih + b_ih, hidden(carry) @ W_hh + b_hh,
    carry)``; the same functions form the cell's :class:`DenseRecurrence`.
    """

    def step(params, carry, x):
        px = x @ params["weight_ih"] + params["bias_ih"]
        hh = hidden(carry) @ params["weight_hh"] + params["bias_hh"]
        return pointwise(px, hh, carry)

    return Cell(
        name=name,
        hidden_size=hidden_size,
        init=init,
        initial_carry=initial_carry,
        step=step,
        output=output,
        input_size=input_size,
        recurrent_weight=recurrent_weight,
        hyperparameters=hyperparameters,
        dense=DenseRecurrence(
            hidden=hidden, pointwise=pointwise, additive=additive, pointwise_vjp=pointwise_vjp
        ),
        exports=exports or {},
    )
